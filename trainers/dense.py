"""The dense reference: no pruning, equal task weights. It is a method so it runs through the same loop."""

from __future__ import annotations

from typing import ClassVar

from trainers.methods import MethodMetadata, MethodParams, PruningMethod


class DenseParams(MethodParams):
    pass


class Dense(PruningMethod):
    name = "dense"
    Params = DenseParams
    requires_target: ClassVar[bool] = False
    # The AdapMTL paper cites DeepLab [5] for its dense baseline and its ASPP heads.
    metadata = MethodMetadata(
        title="DeepLab: Semantic Image Segmentation with Deep Convolutional Nets, Atrous Convolution, and Fully "
              "Connected CRFs",
        year=2017,
        bibtex_key="chen2017deeplab",
        display_name="Dense Model",
        bibtex=(
            "@article{chen2017deeplab, title={{DeepLab}: Semantic Image Segmentation with Deep Convolutional "
            "Nets, Atrous Convolution, and Fully Connected {CRFs}}, author={Chen, Liang-Chieh and Papandreou, "
            "George and Kokkinos, Iasonas and Murphy, Kevin and Yuille, Alan L.}, journal={IEEE Transactions on "
            "Pattern Analysis and Machine Intelligence}, volume={40}, number={4}, pages={834--848}, year={2017}}"
        ),
    )
