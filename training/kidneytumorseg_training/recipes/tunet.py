"""``tunet``: TuNet, the cascade of seed ``003_e0ae88637b7bd379.txt`` (L-Net localisation, W-Net whole region,
T-Net tumor).

From the paper: the whole CT downsampled to 128 x 128 x 64 for a 3D U-Net (L-Net) that finds the whole (kidney +
tumor) region; W-Net (whole region) and T-Net (tumor) are 3D U-Nets on 256 x 256 x 128 volumes in which the
input image, downsampled, is concatenated to every encoder level; T-Net's input is the image and the W-Net
probability map; a squeeze-and-excitation block after each convolution block; optional 3 x 3 x 3 median
denoising; per-image zero mean and unit variance; soft Dice loss of the whole and tumor regions; Adam at 1e-4,
L2 1e-5, divided by 5 after 6 epochs without improvement of the validation loss, 200 epochs; patches of
128 x 128 x 128 overlapping by 96; rotation within +-1 degree; post-processing by adaptive thresholds and region
growing (Algorithm 1), merged with the L-Net output.
"""

from __future__ import annotations

from kidneytumorseg_training.recipes.base import Recipe
from kidneytumorseg_training.recipes.cascade import CascadeRecipe, Stage

PAPER = ("TuNet: L-Net localisation, W-Net whole-region and T-Net tumor 3D U-Nets with input injection, "
         "squeeze-and-excitation and median denoising (KiTS19 challenge, 2019)")
SEED = "003_e0ae88637b7bd379.txt"
WHOLE_SPACING = (3.0, 1.56, 1.56)  # 512 -> 256 pixels, about 128 slices
ROTATION_ONLY = {"p_rotation": 1.0, "rotation_degrees": 1.0, "p_scale": 0.0, "p_elastic": 0.0, "p_noise": 0.0,
                 "p_blur": 0.0, "p_brightness": 0.0, "p_contrast": 0.0, "p_lowres": 0.0, "p_gamma": 0.0,
                 "p_gamma_inverted": 0.0, "p_mirror": 0.0}
ADAM = {"optimizer": "adam", "learning_rate": 1e-4, "weight_decay": 1e-5, "plateau_patience": 6, "plateau_factor": 0.2,
        "epochs": 200}
SOFT_DICE = {"loss": "dice_ce", "loss_options": {"weight_ce": 0.0, "weight_dice": 1.0}}
PER_IMAGE_ZSCORE = {"scheme": "percentile_zscore", "percentiles": [0.0, 100.0]}  # zero mean, unit variance
MEDIAN = 3  # the "+ median" variants
INFERENCE = {"tile_overlap": 0.75, "mirror_axes": [], "gaussian_sigma_scale": 0.125}  # 96 of 128 overlap


def _stage_recipe(name: str, summary: str, spacing: tuple[float, float, float], patch: tuple[int, int, int],
                  **options: object) -> Recipe:
    settings = {"normalization": PER_IMAGE_ZSCORE, "image_interpolation": "linear", "label_interpolation": "nearest",
                "batch_size": 2, "base_features": 32, "block": "plain", "max_stages": 5, "deep_supervision": False,
                "iterations_per_epoch": 250, "val_iterations": 25, "augmentation": ROTATION_ONLY,
                "inference": INFERENCE,
                **ADAM, **SOFT_DICE, **options}
    return Recipe(name=name, paper=PAPER, seed_file=SEED, summary=summary, target_spacing=spacing, patch_size=patch,
                  **settings)


L_NET = _stage_recipe("tunet-lnet", "L-Net: 3D U-Net on the whole CT at low resolution (whole region)",
                      (6.0, 3.12, 3.12), (64, 128, 128), foreground_fraction=1 / 3)
W_NET = _stage_recipe("tunet-wnet", "W-Net: 3D U-Net, image injected at every encoder level, SE (whole region)",
                      WHOLE_SPACING, (128, 128, 128), foreground_fraction=1 / 3,
                      network_options={"inject_input": True, "squeeze_excitation": True})
T_NET = _stage_recipe("tunet-tnet", "T-Net: W-Net's architecture on image + W-Net probability (tumor)",
                      WHOLE_SPACING, (128, 128, 128), foreground_fraction=1.0,
                      network_options={"inject_input": True, "squeeze_excitation": True})

TUNET = CascadeRecipe(
    name="tunet",
    paper=PAPER,
    seed_file=SEED,
    summary="L-Net localisation, W-Net whole region, T-Net tumor on image + W-Net probability; input injection, "
            "SE, 3^3 median denoising, adaptive threshold + region growing",
    stages=(
        Stage("lnet", "localizer", L_NET, {"label_map": [0, 1, 1, 1]}),
        Stage("wnet", "segmenter", W_NET, {"label_map": [0, 1, 1, 1], "median_filter": MEDIAN}),
        Stage("tnet", "refiner", T_NET, {
            "label_map": [0, 0, 1, 2], "median_filter": MEDIAN,
            "stage_input": {"mask_image": False, "mask_dilation_mm": 5.0, "fill": 0.0,
                            "probability_channels": ["kidney_and_mass"], "crop_margin_mm": 20.0}}),
    ),
    inference=INFERENCE,
    postprocessing={"max_kidney_components": None, "remove_masses_not_touching_kidney": False,
                    "min_component_ml": 0.0, "hysteresis": None, "adaptive_threshold": True},
    num_folds=5,  # five-fold cross-validation
    paper_folds=(0,),
    deviations=(
        "KiTS19 had no cyst label: T-Net outputs tumor and cyst (label_map [0, 0, 1, 2]) and the adaptive "
        "threshold treats both as the mass.",
        "Volumes are resampled to a spacing (W/T-Net 3 x 1.56 x 1.56 mm, L-Net 6 x 3.12 x 3.12 mm: the KiTS19 "
        "median 0.78 mm doubled / quadrupled, about 128 / 64 slices) rather than to fixed 256 x 256 x 128 / "
        "128 x 128 x 64 grids with zero padding; L-Net runs as the engine's localizer (boxes, sliding window) "
        "rather than on the whole volume.",
        "The L-Net output bounds the region the segmenters run on (the engine's localizer boxes) instead of being "
        "multiplied with the probability maps.",
        "T-Net is trained on the reference whole region, perturbed and blurred as the engine's stage-2 "
        "training does (docs/cascades.md), not on W-Net's predictions; at inference it takes W-Net's probability.",
        "Softmax outputs instead of sigmoid; one soft Dice per network (W-Net whole, T-Net tumor and cyst) "
        "rather than L_whole + L_tumor summed over a shared output.",
        "No early stopping (the paper stopped after 15 epochs without improvement): the best checkpoint by "
        "validation Dice is exported.",
        "Not stated and chosen: batch size 2, 32 base features, 5 resolution levels, foreground sampling (a third "
        "of the patches; T-Net always on the kidney). The package is the 'TuNet + SEB + median' variant (one "
        "model, not the paper's ensemble of variants).",
    ),
)

RECIPES = (TUNET,)
