"""``isensee2019-plain``, ``-residual``, ``-preact``: Isensee & Maier-Hein, "An attempt at beating the 3D U-Net"
(KiTS19 winner, composite Dice 91.23; /work/shared/seeds/001_519b48bbaeb04603.txt).

From the paper: every case resampled to 3.22 x 1.62 x 1.62 mm; intensities clipped to [-79, 304], then
(x - 101) / 76.9; three 3D U-Nets with ReLU and instance normalisation, strided convolutions down, transposed
convolutions up, features doubling per downsampling up to 320, downsampling until a feature map would fall below 4:
a plain U-Net (two conv-instnorm-ReLU per stage in encoder and decoder, 30 base features), a residual U-Net
(residual blocks in the encoder, one at the highest resolution and more after each downsampling, one convolution
per decoder stage, 24 base features) and the same with pre-activation residual blocks; patch 80 x 160 x 160,
batch 2, 1000 epochs of 250 batches, SGD, cross-entropy + Dice with deep supervision; scaling, rotation,
brightness, contrast, gamma and Gaussian noise augmentation; five-fold cross-validation, the five folds ensembled
by averaging their softmax outputs.

The fold ensemble is one package whose members are the folds: ``recipe run isensee2019-residual --folds
0,1,2,3,4`` (the default at the full budget) exports it, and the engine's predictor averages the members'
softmax.
"""

from __future__ import annotations

from kidneytumorseg_training.recipes.base import Recipe

PAPER = "Isensee F, Maier-Hein KH. An attempt at beating the 3D U-Net. KiTS19 challenge, 2019 (winner)"
SPACING = (3.22, 1.62, 1.62)
NORMALIZATION = {"scheme": "clip_zscore", "clip": [-79.0, 304.0], "mean": 101.0, "std": 76.9}
# nnU-Net's augmentation as in 2019, as the paper lists it: no blur and no low-resolution simulation.
AUGMENTATION = {"p_blur": 0.0, "p_lowres": 0.0}
DEVIATIONS = (
    "The learning rate, momentum and schedule of SGD are not in the paper: nnU-Net v1's (0.01, Nesterov "
    "momentum 0.99, polynomial decay 0.9), on which the paper's code is based.",
    "Batch Dice (Dice over the whole batch), as nnU-Net v1 used for KiTS' full-resolution network.",
    "Images are resampled with a third-order spline (nnU-Net's order 3), labels one-hot with linear interpolation "
    "(nnU-Net's order 1 for segmentations).",
    "Mirroring is kept in training and at test time (nnU-Net's default, not listed in the paper).",
    "The paper's KiTS19-specific label fixes (cases excluded or relabelled) have no counterpart here.",
)
INFERENCE = {"tile_overlap": 0.5, "mirror_axes": [0, 1, 2], "gaussian_sigma_scale": 0.125}
NO_POSTPROCESSING = {"max_kidney_components": None, "remove_masses_not_touching_kidney": False,
                     "min_component_ml": 0.0, "hysteresis": None}


def _isensee(name: str, block: str, base_features: int, summary: str) -> Recipe:
    return Recipe(
        name=name, paper=PAPER, seed_file="001_519b48bbaeb04603.txt", summary=summary,
        target_spacing=SPACING, normalization=NORMALIZATION, image_interpolation="bspline",
        label_interpolation="linear", patch_size=(80, 160, 160), batch_size=2, base_features=base_features,
        block=block, max_features=320, min_feature_map=4,
        # The engine's planner gives residual encoders 1, 3, 4, 6, 6, ... blocks and one decoder convolution
        # per stage, the paper's numbers; the plain U-Net two convolutions per stage on both sides.
        network_options={"nonlinearity": "relu", "norm": "instance"},
        foreground_fraction=1 / 3, epochs=1000, iterations_per_epoch=250, val_iterations=50,
        optimizer="sgd", learning_rate=0.01, momentum=0.99, poly_exponent=0.9, loss="dice_ce",
        loss_options={"batch_dice": True}, deep_supervision=True, augmentation=AUGMENTATION,
        num_folds=5, paper_folds=(0, 1, 2, 3, 4), inference=INFERENCE, postprocessing=NO_POSTPROCESSING,
        deviations=DEVIATIONS,
    )


ISENSEE2019_PLAIN = _isensee("isensee2019-plain", "plain", 30,
                             "plain 3D U-Net, 30 features, 3.22 x 1.62 x 1.62 mm, SGD, CE + Dice, 5-fold ensemble")
ISENSEE2019_RESIDUAL = _isensee("isensee2019-residual", "residual", 24,
                                "residual 3D U-Net (the KiTS19 winner), 24 features, 5-fold ensemble")
ISENSEE2019_PREACT = _isensee("isensee2019-preact", "preact", 24,
                              "pre-activation residual 3D U-Net, 24 features, 5-fold ensemble")

RECIPES = (ISENSEE2019_PLAIN, ISENSEE2019_RESIDUAL, ISENSEE2019_PREACT)
