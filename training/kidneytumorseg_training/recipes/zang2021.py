"""``zang2021-kits21``: Zang, Wysoczanski, Angelini, Laine, "3D U-Net based semantic segmentation of kidneys and
renal masses on contrast-enhanced CT" (KiTS21; /work/shared/seeds/004_eb5a44fca3b8b099.txt).

From the paper: CT resampled to 1.99 mm isotropic with a third-order spline, masks with nearest neighbour; each
case clipped to its own 0.5 / 99.5 percentiles, then z-scored with its own mean and standard deviation; mirroring,
rotation about all axes, brightness, gamma, contrast and scaling, each with probability 0.4; a 3D U-Net (nnU-Net
framework) with 3 x 3 x 3 convolutions, 2 x 2 x 2 transposed convolutions, 32 base features doubling per
downsampling until a 4 x 4 x 4 output; a prediction at each decoder level, the loss (cross-entropy + soft Dice)
weighted by a half per resolution drop; patch 128^3, batch 4, foreground oversampling (at least a third);
SGD at 0.06, momentum 0.99, Nesterov; 1000 epochs of 250 batches; kidney, tumor and cyst output; sliding window
with a stride of half the patch; no post-processing.
"""

from __future__ import annotations

from kidneytumorseg_training.recipes.base import Recipe

PAPER = ("Zang M, Wysoczanski A, Angelini E, Laine AF. 3D U-Net based semantic segmentation of kidneys and renal "
         "masses on contrast-enhanced CT. KiTS21 challenge, 2021")
P_AUGMENT = 0.4

ZANG2021_KITS21 = Recipe(
    name="zang2021-kits21",
    paper=PAPER,
    seed_file="004_eb5a44fca3b8b099.txt",
    summary="3D U-Net at 1.99 mm isotropic, per-case z-score, 32 features down to 4^3, SGD 0.06 Nesterov, "
            "kidney / tumor / cyst",
    target_spacing=(1.99, 1.99, 1.99),
    normalization={"scheme": "percentile_zscore", "percentiles": [0.5, 99.5]},
    image_interpolation="bspline",  # SimpleITK's B-spline is third order
    label_interpolation="nearest",
    patch_size=(128, 128, 128),
    batch_size=4,
    base_features=32,
    block="plain",
    max_features=320,
    min_feature_map=4,
    network_options={"nonlinearity": "leaky_relu", "norm": "instance"},
    foreground_fraction=1 / 3,
    epochs=1000,
    iterations_per_epoch=250,
    val_iterations=50,
    optimizer="sgd",
    learning_rate=0.06,
    momentum=0.99,
    poly_exponent=0.9,
    loss="dice_ce",
    loss_options={},
    deep_supervision=True,
    augmentation={"p_mirror": P_AUGMENT, "p_rotation": P_AUGMENT, "p_scale": P_AUGMENT, "p_brightness": P_AUGMENT,
                  "p_contrast": P_AUGMENT, "p_gamma": P_AUGMENT, "p_gamma_inverted": 0.0, "p_noise": 0.0,
                  "p_blur": 0.0, "p_lowres": 0.0, "p_elastic": 0.0},
    num_folds=5,  # 240 training, 60 validation cases: one fifth
    paper_folds=(0,),
    inference={"tile_overlap": 0.5, "mirror_axes": [0, 1, 2], "gaussian_sigma_scale": 0.125},
    postprocessing={"max_kidney_components": None, "remove_masses_not_touching_kidney": False,
                    "min_component_ml": 0.0, "hysteresis": None},
    deviations=(
        "Foreground oversampling centres a third of each batch's patches on a foreground voxel (nnU-Net's rule, "
        "the framework the paper used); the paper states it as at least a third foreground.",
        "Deep supervision weights halve per level as in the paper, with nnU-Net's normalisation and the coarsest "
        "output unweighted.",
        "The learning-rate decay (polynomial, 0.9) and leaky ReLU are not in the paper: nnU-Net's defaults.",
        "Mirroring at test time is not mentioned in the paper; nnU-Net's validation mirrors, so the package "
        "mirrors at quality 'best'.",
        "Mirroring is drawn per axis with probability 0.4.",
    ),
)

RECIPES = (ZANG2021_KITS21,)
