"""``zhao2019-msunet``: Zhao & Zeng, "Multi scale supervised 3D U-Net for kidney and tumor segmentation" (KiTS19,
7th place, composite Dice 0.8961; /work/shared/seeds/000_10745b5eadbff926.txt).

From the paper: clipping to the 0.5 / 99.5 percentiles and a z-score with the global foreground mean and standard
deviation "by convention" (nnU-Net's CT scheme), all cases resampled to one spacing; a 5-level 3D U-Net with
strided convolutions down and transposed convolutions up, 30 base features, a prediction at every decoder level
(multi-scale supervision); exponential logarithmic loss, Dice terms (-ln Dice)^0.3 weighted 0.4 kidney / 0.6
tumor plus cross-entropy weighted 0.28 background / 0.28 kidney / 0.44 tumor (eq. 1-3); Adam at 3e-4, divided by
5 after 30 epochs without improvement; patch 48 x 192 x 192, batch 8, 250 iterations per epoch; rotation,
scaling, elastic deformation, gamma and mirroring; overlapping sliding window with mirroring at test time;
connected-component post-processing (at most two kidneys, masses must touch a kidney).
"""

from __future__ import annotations

from kidneytumorseg_training.recipes.base import Recipe

PAPER = "Zhao W, Zeng Z. Multi scale supervised 3D U-Net for kidney and tumor segmentation. KiTS19 challenge, 2019"

ZHAO2019_MSUNET = Recipe(
    name="zhao2019-msunet",
    paper=PAPER,
    seed_file="000_10745b5eadbff926.txt",
    summary="multi-scale supervised 3D U-Net, 30 features, exponential logarithmic loss, Adam 3e-4, "
            "connected-component post-processing",
    target_spacing=None,  # "resampled the data into a same voxel space": the median spacing (nnU-Net's rule)
    normalization=None,  # training-foreground percentiles, mean and std (nnU-Net's CT scheme)
    patch_size=(48, 192, 192),  # "192 x 192 x 48": 48 slices
    batch_size=8,
    base_features=30,
    block="plain",
    max_stages=5,  # "the basic U-Net with only 5 layers"
    foreground_fraction=0.0,  # "the patch was random sampled": no foreground oversampling
    epochs=1000,  # not given (about 5 days on 2 GPUs); nnU-Net's 1000 epochs of 250 iterations
    iterations_per_epoch=250,
    val_iterations=50,
    optimizer="adam",
    learning_rate=3e-4,
    plateau_patience=30,
    plateau_factor=0.2,
    plateau_metric="train_loss",  # the paper watches the training loss
    loss="exp_log",
    loss_options={"dice_weights": [0.4, 0.6, 0.6], "ce_weights": [0.28, 0.28, 0.44, 0.44],
                  "gamma_dice": 0.3, "gamma_cross": 1.0, "w_dice": 1.0, "w_cross": 1.0},
    deep_supervision=True,
    augmentation={"p_rotation": 0.2, "p_scale": 0.2, "p_gamma": 0.3, "p_gamma_inverted": 0.0, "p_mirror": 0.5,
                  "p_noise": 0.0, "p_blur": 0.0, "p_brightness": 0.0, "p_contrast": 0.0, "p_lowres": 0.0},
    costly_augmentation={"p_elastic": 0.2},
    num_folds=5,  # 42 of 210 cases held out: one fifth
    paper_folds=(0,),
    inference={"tile_overlap": 0.5, "mirror_axes": [0, 1, 2], "gaussian_sigma_scale": 0.125},
    postprocessing={"max_kidney_components": 2, "remove_masses_not_touching_kidney": True,
                    "min_component_ml": 0.0, "hysteresis": None},
    deviations=(
        "KiTS19 had no cyst label: the cyst (a renal mass) takes the tumor's Dice and cross-entropy weight, "
        "and the loss renormalises the weights to sum 1 as the paper's do.",
        "Deep supervision weights are nnU-Net's (1/2^level, the coarsest output unweighted); the paper gives "
        "no weights.",
        "Percentile clipping uses the training foreground's 0.5 / 99.5 percentiles (nnU-Net's convention, which "
        "the paper follows); 'their 0.5 and 99.5th percentile' could also mean each image's own.",
        "The number of epochs, tile overlap, instance normalisation and leaky ReLU are not in the paper: "
        "nnU-Net's defaults.",
        "Elastic deformation (3-7 s per patch on a CPU) is used only from budget 0.25 on.",
    ),
)

RECIPES = (ZHAO2019_MSUNET,)
