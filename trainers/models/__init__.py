"""Multitask dense-prediction models: DeepLab-ResNet34 / MobileNetV2 backbones with per-task ASPP heads."""

from trainers.models.aspp import ASPPHead
from trainers.models.deeplab_resnet import DeepLabResNet
from trainers.models.mobilenetv2 import MobileNetV2Backbone
from trainers.models.multitask import ARCHS, MultiTaskModel, build_model

__all__ = ["ARCHS", "ASPPHead", "DeepLabResNet", "MobileNetV2Backbone", "MultiTaskModel", "build_model"]
