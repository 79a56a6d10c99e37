"""``kits19-twostage``: the KiTS19 two-stage method of seed ``002_3adadcb1e212eb7c.txt`` (a 3D residual kidney
network, then a 2.5D tumor network on the kidney-masked image).

From the paper:

- Stage 1 (kidney): a 3D U-Net with a 4-level encoder and decoder and residual connections, a prediction after
  each decoder level (4 outputs), Dice loss ``L0 + p * sum(Li)`` with ``p`` starting at 0.33 and multiplied by
  0.8 every 15 epochs; slice thickness made 2 mm by trilinear interpolation, masks by nearest neighbour, slices
  reduced from 512 to 256 pixels (about 1.56 mm); 64 consecutive slices per case and step, slices near the
  kidney preferred (the kidney slices extended by 50 on each side); left-right mirroring; 500 epochs; sliding
  window of 64 slices with a stride of 32.
- Stage 2 (tumor): the image multiplied by the kidney mask, 1 mm slices at the original 512 pixels; a 2.5D VNet
  with multi-scale input (the image downsampled and fed to every encoder level), squeeze-and-excitation in
  every downsampling stage, attention gates on the skip connections, three hybrid dilated convolutions (rates
  2, 3, 5) at the bottom of the encoder; focal loss + weighted Dice; the renal cysts (the hard cases) resampled;
  rotation, translation, cropping, histogram equalisation and Gaussian blur; the largest connected tumor
  component kept.
"""

from __future__ import annotations

from kidneytumorseg_training.recipes.base import Recipe
from kidneytumorseg_training.recipes.cascade import CascadeRecipe, Stage

PAPER = ("Two-stage kidney and tumor segmentation for KiTS19: a 3D residual U-Net with decaying deep supervision "
         "for the kidney, then a 2.5D multi-scale SE / attention / HDC VNet for the tumor (KiTS19 challenge, 2019)")
SEED = "002_3adadcb1e212eb7c.txt"
DEEP_SUPERVISION_DECAY = {"initial": 0.33, "factor": 0.8, "every_epochs": 15}
HDC_DILATIONS = [2, 3, 5]
NO_AUGMENTATION = {"p_rotation": 0.0, "p_scale": 0.0, "p_elastic": 0.0, "p_noise": 0.0, "p_blur": 0.0,
                   "p_brightness": 0.0, "p_contrast": 0.0, "p_lowres": 0.0, "p_gamma": 0.0, "p_gamma_inverted": 0.0,
                   "p_mirror": 0.0}

KIDNEY = Recipe(
    name="kits19-twostage-kidney",
    paper=PAPER,
    seed_file=SEED,
    summary="3D residual U-Net, 4 decoder outputs, Dice with decaying deep supervision (0.33 x 0.8 / 15 epochs)",
    target_spacing=(2.0, 1.56, 1.56),  # 2 mm slices, 512 -> 256 pixels (KiTS19's median 0.78 mm doubled)
    normalization=None,  # not stated: nnU-Net's CT scheme from the training foreground
    image_interpolation="linear",  # trilinear
    label_interpolation="nearest",
    patch_size=(64, 256, 256),  # 64 consecutive slices of 256 x 256
    batch_size=2,  # not stated (two GPUs)
    base_features=32,  # not stated: the 3D U-Net's 32
    block="residual",
    max_stages=5,  # 4 encoder levels + the bottom: 4 decoder outputs
    foreground_fraction=0.5,  # slices near the kidney preferred
    epochs=500,
    iterations_per_epoch=95,  # one 64-slice patch per training case (190) per epoch, batch 2
    val_iterations=10,
    optimizer="adam",  # not stated
    learning_rate=3e-4,
    weight_decay=3e-5,
    plateau_patience=15,
    plateau_factor=0.5,
    loss="dice_ce",
    loss_options={"weight_ce": 0.0, "weight_dice": 1.0},  # Dice loss only
    deep_supervision=True,
    augmentation={**NO_AUGMENTATION, "p_mirror": 0.5, "mirror_axes": [2]},  # mirrored left-right
    inference={"tile_overlap": 0.5, "mirror_axes": [], "gaussian_sigma_scale": 0.125},
)

TUMOR = Recipe(
    name="kits19-twostage-tumor",
    paper=PAPER,
    seed_file=SEED,
    summary="2.5D residual VNet on the kidney-masked image: multi-scale input, SE, attention gates, HDC 2/3/5, "
            "focal + weighted Dice, cyst resampling",
    target_spacing=(1.0, 0.78, 0.78),  # 1 mm slices, the original 512 pixels
    normalization=None,
    image_interpolation="linear",
    label_interpolation="nearest",
    patch_size=(512, 512),  # in-plane (the 2.5D member's slices)
    batch_size=4,  # not stated
    base_features=16,  # VNet's 16
    block="residual",
    max_stages=5,  # VNet: 4 downsamplings
    network_options={"inject_input": True, "squeeze_excitation": True, "attention_gates": True,
                     "bottleneck_dilations": HDC_DILATIONS},
    foreground_fraction=1.0,  # stage-2 crops always hold kidney
    epochs=500,  # not stated: stage 1's
    iterations_per_epoch=250,
    val_iterations=25,
    optimizer="adam",
    learning_rate=3e-4,
    weight_decay=3e-5,
    plateau_patience=15,
    plateau_factor=0.5,
    loss="focal_dice",
    loss_options={"gamma": 2.0, "dice_weights": [0.6, 0.4]},  # tumor, cyst (weights not stated)
    deep_supervision=False,  # VNet: one output
    augmentation={**NO_AUGMENTATION, "p_rotation": 0.2, "rotation_degrees": 15.0, "p_scale": 0.2, "p_blur": 0.2,
                  "p_contrast": 0.15},
)

KITS19_TWOSTAGE = CascadeRecipe(
    name="kits19-twostage",
    paper=PAPER,
    seed_file=SEED,
    summary="3D residual kidney U-Net (decaying deep supervision), then a 2.5D SE / attention / HDC tumor VNet on "
            "the kidney-masked image; largest tumor component",
    stages=(
        Stage("kidney", "segmenter", KIDNEY, {"label_map": [0, 1, 1, 1],
                                              "deep_supervision_decay": DEEP_SUPERVISION_DECAY}),
        Stage("tumor", "refiner", TUMOR, {
            "label_map": [0, 0, 1, 2], "context_slices": 1,
            "stage_input": {"mask_image": True, "mask_dilation_mm": 5.0, "fill": 0.0, "probability_channels": [],
                            "crop_margin_mm": 20.0},
            "hard_case_class": 3, "hard_case_fraction": 0.3}),
    ),
    inference={"tile_overlap": 0.5, "mirror_axes": [], "gaussian_sigma_scale": 0.125},
    postprocessing={"max_kidney_components": 2, "remove_masses_not_touching_kidney": True, "min_component_ml": 0.0,
                    "hysteresis": None, "max_tumor_components": 1},
    num_folds=5,  # 190 of 210 cases for training in stage 1: about one tenth held out; folds as the others
    paper_folds=(0,),
    deviations=(
        "KiTS19 had no cyst label: stage 2 outputs tumor and cyst (label_map [0, 0, 1, 2]); its hard cases are the "
        "cyst voxels, 30 % of the patches centred on one (the paper resamples the cases with cysts, no rate).",
        "Slices are resampled to a spacing (1.56 mm in-plane, stage 2 0.78 mm) rather than resized to 256 / 512 "
        "pixels, so cases of any field of view keep their physical size.",
        "The paper normalises stage 2 per slice within the kidney ('HU value (40-50)'); both stages here use the "
        "training foreground's clip and z-score, and the area outside the dilated kidney mask is 0 (the mean).",
        "Not stated and chosen: optimizer (Adam 3e-4, halved after 15 epochs without improvement), batch sizes "
        "(2, 4), base features (32, VNet's 16), stage 2 epochs (500, as stage 1), 3 slices of 2.5D context, "
        "Dice weights 0.6 tumor / 0.4 cyst, focal gamma 2; residual blocks per encoder stage are the engine's "
        "residual U-Net's (1, 3, 4, 6, 6: Isensee 2019), one convolution per decoder stage.",
        "Stage 1 draws half of its patches centred on the kidney instead of cropping each case to the kidney "
        "slices +-50.",
        "Stage 2 is trained on the reference kidney region, randomly perturbed (docs/cascades.md), not on stage 1's "
        "predictions; at inference it runs on stage 1's region as in the paper.",
        "Histogram equalisation is approximated by contrast augmentation, translation and cropping by the random "
        "patch position; stage 1's 'centrally symmetric mirroring' by left-right mirroring.",
    ),
)

RECIPES = (KITS19_TWOSTAGE,)
