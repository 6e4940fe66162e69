"""Data pipeline: decoding, annotations, sampling, transforms, datasets."""

from xvit.data.video import VideoDecodeError as VideoDecodeError
from xvit.data.video import VideoReader as VideoReader
from xvit.data.video import open_video as open_video
from xvit.data.video import read_frames as read_frames
from xvit.data.video import torchcodec_available as torchcodec_available
from xvit.data.frames import FrameFolderReader as FrameFolderReader
from xvit.data.frames import HDF5FrameReader as HDF5FrameReader
from xvit.data.frames import decode_image as decode_image
