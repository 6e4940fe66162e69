"""Data pipeline: decoding, annotations, sampling, transforms, datasets."""

from xvit.data.annotations import read_annotations as read_annotations
from xvit.data.dataset import VideoDataset as VideoDataset
from xvit.data.dataset import build_loader as build_loader
from xvit.data.dataset import collate as collate
from xvit.data.errors import AnnotationError as AnnotationError
from xvit.data.errors import VideoDecodeError as VideoDecodeError
from xvit.data.frames import FrameFolderReader as FrameFolderReader
from xvit.data.frames import HDF5FrameReader as HDF5FrameReader
from xvit.data.frames import decode_image as decode_image
from xvit.data.mixup import Mixup as Mixup
from xvit.data.samples import Annotations as Annotations
from xvit.data.samples import Sample as Sample
from xvit.data.sampling import DenseSampler as DenseSampler
from xvit.data.sampling import UniformSampler as UniformSampler
from xvit.data.transforms import EvalTransform as EvalTransform
from xvit.data.transforms import TrainTransform as TrainTransform
from xvit.data.video import VideoReader as VideoReader
from xvit.data.video import open_video as open_video
from xvit.data.video import read_frames as read_frames
from xvit.data.video_torchcodec import torchcodec_available as torchcodec_available
