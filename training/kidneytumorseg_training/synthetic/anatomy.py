"""A tissue map of the abdomen placed around the real kidneys of a KiTS mask.

Everything is positioned in the anatomical frame of ``frame.py`` (u left, v posterior, w superior, mm,
origin between the kidneys): the spine posterior-medial between the kidneys, the aorta left-anterior and
the IVC right-anterior of the spine, the liver above-lateral on the right, the spleen on the left, renal
vessels to each hilum, perirenal fat around each kidney, bowel in front, ribs and lungs above, the
scanner table behind the patient. The mask's own labels are painted last and always win.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from kidneytumorseg.labels import CYST, KIDNEY, TUMOR
from kidneytumorseg_training.synthetic import shapes
from kidneytumorseg_training.synthetic.frame import AnatomicalFrame
from kidneytumorseg_training.synthetic.noise import smooth_noise
from kidneytumorseg_training.synthetic.tissues import Tissue as T


@dataclass(frozen=True)
class BodyPlan:
    """Per-case body habitus, drawn from the case's random generator."""

    half_width: float  # mm, lateral semi-axis of the body outline
    anterior: float  # mm from the kidney midpoint to the anterior skin
    posterior: float  # mm from the kidney midpoint to the posterior skin
    exponent: float  # superellipse exponent of the outline (2 = ellipse, larger = boxier)
    skin: float
    subcutaneous_fat: float
    wall_muscle: float
    spine_v: float  # AP position of the vertebral body centre
    perirenal_fat: float
    oral_contrast: bool


def plan_body(frame: AnatomicalFrame, rng: np.random.Generator) -> BodyPlan:
    """Draw a body habitus that contains the kidneys with room for the surrounding anatomy."""
    lateral_extent = max([abs(k.lower[0]) for k in frame.kidneys] + [abs(k.upper[0]) for k in frame.kidneys] + [60])
    posterior_extent = max([k.upper[1] for k in frame.kidneys] + [30])
    anterior_extent = max([-k.lower[1] for k in frame.kidneys] + [30])
    fat = float(rng.uniform(8, 45))
    spine_v = float(rng.uniform(-5, 12))
    return BodyPlan(
        half_width=max(float(rng.uniform(135, 185)) + fat / 2, lateral_extent + fat + 35),
        anterior=max(float(rng.uniform(110, 170)) + fat, anterior_extent + fat + 70),
        posterior=max(spine_v + 75 + fat, posterior_extent + fat + 25),
        exponent=float(rng.uniform(2.2, 3.0)),
        skin=float(rng.uniform(1.5, 3.0)),
        subcutaneous_fat=fat,
        wall_muscle=float(rng.uniform(7, 14)),
        spine_v=spine_v,
        perirenal_fat=float(rng.uniform(3, 12)),
        oral_contrast=bool(rng.random() < 0.3),
    )


def build_tissue_map(frame: AnatomicalFrame, mask: np.ndarray, plan: BodyPlan, rng: np.random.Generator) -> np.ndarray:
    """Return a uint8 tissue map (values of ``Tissue``) on the LPS grid of ``mask``."""
    tissue = np.full(frame.shape, T.AIR, dtype=np.uint8)
    depth = _body_depth(frame, plan, rng)
    _paint_table(tissue, frame, depth)
    tissue[depth >= 0] = T.SKIN
    tissue[depth >= plan.skin] = T.SUBCUTANEOUS_FAT
    wall_start = smooth_noise(frame.shape, frame.spacing, 60, rng)  # fat thickness varies around the body
    wall_start *= np.float32(0.3 * plan.subcutaneous_fat)
    wall_start += np.float32(plan.skin + plan.subcutaneous_fat)
    tissue[depth >= wall_start] = T.MUSCLE
    wall_start += np.float32(plan.wall_muscle)
    cavity = depth >= wall_start
    tissue[cavity] = T.VISCERAL_FAT
    del wall_start

    lung = _paint_lungs(tissue, frame, plan, cavity)
    _paint_ribs(tissue, frame, plan, depth)
    del depth
    soft = cavity & ~lung
    _paint_back_muscles(tissue, frame, plan, soft, rng)
    _paint_solid_organs(tissue, frame, plan, soft, rng)
    _paint_bowel(tissue, frame, plan, soft, rng)
    _paint_spine(tissue, frame, plan, rng)
    _paint_vessels(tissue, frame, plan, soft, rng)
    _paint_perirenal_fat(tissue, frame, mask, plan)
    tissue[mask == KIDNEY] = T.KIDNEY
    tissue[mask == TUMOR] = T.TUMOR
    tissue[mask == CYST] = T.CYST
    return tissue


def _body_depth(frame: AnatomicalFrame, plan: BodyPlan, rng: np.random.Generator) -> np.ndarray:
    """Approximate depth (mm) below the skin of every voxel: negative outside the body.

    The outline changes slowly from head to feet and is slightly irregular, except at the back, which
    lies flat on the table at ``plan.posterior``. Computed slice by slice in float32 to bound memory.
    """
    v_centre = (plan.posterior - plan.anterior) / 2
    semi_v = (plan.posterior + plan.anterior) / 2
    sizes = 1 + 0.05 * smooth_noise((frame.shape[0], 1, 1), (frame.spacing[0], 1, 1), 120, rng).ravel()
    phase3, phase5 = rng.uniform(0, 2 * np.pi), rng.uniform(0, 6)
    u0 = frame.u[0].astype(np.float64)  # (1, L)
    v0 = frame.v[0].astype(np.float64)  # (P, 1)
    depth = np.empty(frame.shape, dtype=np.float32)
    for k, size in enumerate(sizes):
        u = u0 / size
        v = (v0 - plan.posterior) / size + plan.posterior - v_centre  # scaled about the back
        theta = np.arctan2(v / semi_v, u / plan.half_width)
        free = 1 - np.maximum(np.sin(theta), 0)  # no wobble where the back rests on the table
        wobble = 1 + free * (0.03 * np.cos(3 * theta + phase3) + 0.02 * np.cos(5 * theta + phase5))
        p = np.where(v > 0, plan.exponent + 1.0, plan.exponent)  # flatter back
        rho = (np.abs(u / plan.half_width) ** p + np.abs(v / semi_v) ** p) ** (1 / p) / wobble
        polar_radius = plan.half_width * semi_v / np.sqrt(
            (semi_v * np.cos(theta)) ** 2 + (plan.half_width * np.sin(theta)) ** 2
        )
        depth[k] = (1 - rho) * polar_radius * size
    return depth


def _paint_table(tissue: np.ndarray, frame: AnatomicalFrame, depth: np.ndarray) -> None:
    inside = (depth >= 0).any(axis=(0, 2))
    back = float(frame.v.ravel()[np.flatnonzero(inside)[-1]]) if inside.any() else float(frame.v.max())
    top = back + 1.0 + 0.0004 * frame.u**2  # curved tabletop right under the patient's back
    v = frame.v
    shell = (v >= top) & (v < top + 16) & (np.abs(frame.u) < 230)
    core = (v >= top + 2) & (v < top + 14) & (np.abs(frame.u) < 226)
    tissue[np.broadcast_to(shell, frame.shape)] = T.TABLE_SHELL
    tissue[np.broadcast_to(core, frame.shape)] = T.TABLE_CORE


def _diaphragm_w(frame: AnatomicalFrame, plan: BodyPlan) -> np.ndarray:
    """Height (w, mm) of the diaphragm dome at each (u, v)."""
    dome_top = 115.0
    r2 = (frame.u / (plan.half_width * 0.85)) ** 2 + ((frame.v - plan.spine_v) / (plan.anterior * 0.9)) ** 2
    return dome_top - 70.0 * np.minimum(r2, 1.5)


def _paint_lungs(tissue: np.ndarray, frame: AnatomicalFrame, plan: BodyPlan, cavity: np.ndarray) -> np.ndarray:
    lung = cavity & (frame.w > _diaphragm_w(frame, plan) + 8) & (frame.v > -0.4 * plan.anterior)
    lung &= np.abs(frame.u) > 25
    tissue[lung] = T.LUNG
    return lung


def _paint_ribs(tissue: np.ndarray, frame: AnatomicalFrame, plan: BodyPlan, depth: np.ndarray) -> None:
    inner = plan.skin + plan.subcutaneous_fat
    band = (depth > inner + 2) & (depth < inner + 2 + 9)
    theta = np.arctan2(frame.v - plan.spine_v, frame.u)  # 0 = left, pi/2 = posterior
    lowest = -40.0 - 30.0 * np.sin(theta)  # lower ribs reach further down posteriorly
    phase = np.mod(frame.w - 18.0 * np.abs(np.cos(theta)), 32.0)
    rib = band & (phase < 10) & (frame.w > lowest) & (frame.v > -plan.anterior * (0.2 + 0.006 * np.maximum(frame.w, 0)))
    cortex = rib & ((phase < 1.8) | (phase > 8.2) | (depth < inner + 3.8) | (depth > inner + 9.2))
    tissue[rib] = T.BONE_CANCELLOUS
    tissue[cortex] = T.BONE_CORTICAL


def _paint_back_muscles(
    tissue: np.ndarray, frame: AnatomicalFrame, plan: BodyPlan, soft: np.ndarray, rng: np.random.Generator
) -> None:
    sv = plan.spine_v
    inside = tissue != T.AIR
    for side in (-1.0, 1.0):
        # Erector spinae, behind the transverse processes.
        shapes.ellipsoid(tissue, frame, (side * 30, sv + 58, 0), (30, 26, 1e4), T.MUSCLE,
                         allowed=inside & (tissue != T.SUBCUTANEOUS_FAT) & (tissue != T.SKIN))
        # Quadratus lumborum, posterior-medial to the kidney.
        shapes.ellipsoid(tissue, frame, (side * 62, sv + 30, -20), (16, 10, 90), T.MUSCLE, allowed=soft)
        # Psoas: grows from the diaphragm downwards alongside the vertebral bodies.
        for w_top, w_bottom, r_top, r_bottom in ((60, -20, 6, 14), (-20, -200, 14, 26)):
            centre_u = side * (24 + r_top)
            shapes.tube(tissue, frame, (centre_u, sv, w_top), (side * (24 + r_bottom), sv - 4, w_bottom),
                        (r_top + r_bottom) / 2, T.MUSCLE, allowed=soft)


def _paint_solid_organs(
    tissue: np.ndarray, frame: AnatomicalFrame, plan: BodyPlan, soft: np.ndarray, rng: np.random.Generator
) -> None:
    rough = smooth_noise(frame.shape, frame.spacing, 40, rng)
    below_diaphragm = soft & (frame.w < _diaphragm_w(frame, plan))
    hw, ant = plan.half_width, plan.anterior
    # Liver: right lobe above-lateral to the right kidney, left lobe across the midline in front.
    right_lobe = (-hw * rng.uniform(0.35, 0.5), -ant * rng.uniform(0.1, 0.3), rng.uniform(55, 90))
    shapes.ellipsoid(tissue, frame, right_lobe, (hw * 0.55, ant * 0.65, rng.uniform(85, 110)), T.LIVER,
                     allowed=below_diaphragm, roughness=rough)
    shapes.ellipsoid(tissue, frame, (rng.uniform(-10, 25), -ant * 0.55, right_lobe[2] + 15),
                     (hw * 0.4, ant * 0.3, 50), T.LIVER, allowed=below_diaphragm, roughness=rough)
    shapes.ellipsoid(tissue, frame, (right_lobe[0] + 35, -ant * 0.5, right_lobe[2] - 60), (14, 16, 32),
                     T.GALLBLADDER, allowed=below_diaphragm)
    # Spleen: left, posterior-lateral, above the left kidney.
    shapes.ellipsoid(tissue, frame, (hw * rng.uniform(0.55, 0.7), rng.uniform(-5, 25), rng.uniform(55, 90)),
                     (rng.uniform(25, 35), rng.uniform(45, 60), rng.uniform(45, 60)), T.SPLEEN,
                     allowed=below_diaphragm, roughness=rough)
    # Stomach: left upper quadrant, anterior, with an air-fluid level (gas is non-dependent: anterior).
    stomach_centre = (hw * rng.uniform(0.2, 0.4), -ant * 0.5, rng.uniform(60, 95))
    region, stomach = shapes.ellipsoid(tissue, frame, stomach_centre, (45, 35, 50), T.STOMACH_WALL,
                                       allowed=below_diaphragm & (tissue != T.LIVER))
    lumen = ndimage.binary_erosion(stomach, iterations=max(1, int(round(4 / min(frame.spacing)))))
    gas_level = stomach_centre[1] - rng.uniform(0, 25)
    gas = lumen & (np.broadcast_to(frame.v[:, region[1], :], lumen.shape) < gas_level)
    tissue[region][lumen] = T.BOWEL_FLUID
    tissue[region][gas] = T.GAS
    # Pancreas: from the duodenal sweep on the right, across the aorta, to the splenic hilum on the left.
    sv = plan.spine_v
    points = [(-35, sv - 45, rng.uniform(0, 20)), (5, sv - 40, 25), (50, sv - 25, 40), (hw * 0.5, sv - 5, 55)]
    shapes.polyline_tube(tissue, frame, points, rng.uniform(9, 13), T.PANCREAS,
                         allowed=below_diaphragm & (tissue == T.VISCERAL_FAT))
    _paint_liver_vessels(tissue, frame, plan, right_lobe, rng)


def _paint_liver_vessels(
    tissue: np.ndarray, frame: AnatomicalFrame, plan: BodyPlan, right_lobe: tuple, rng: np.random.Generator
) -> None:
    """Hepatic veins fanning from the IVC at the liver's dome; the portal vein entering at the hilum."""
    liver = tissue == T.LIVER
    if not liver.any():
        return
    confluence = (-20.0, plan.spine_v - 22, right_lobe[2] + 45)
    for target_u, target_v in ((-0.8, 0.1), (-0.35, -0.45), (0.25, -0.55)):
        end = (plan.half_width * target_u * rng.uniform(0.7, 1.0), plan.anterior * target_v * rng.uniform(0.6, 1.0),
               right_lobe[2] + rng.uniform(-10, 30))
        shapes.tube(tissue, frame, confluence, end, rng.uniform(3.5, 5.5), T.LIVER_VESSEL, allowed=liver)
    hilum = (right_lobe[0] * 0.5, -plan.anterior * 0.25, right_lobe[2] - 20)
    shapes.tube(tissue, frame, (-10, plan.spine_v - 45, 15), hilum, rng.uniform(6, 8), T.LIVER_VESSEL,
                allowed=liver | (tissue == T.VISCERAL_FAT))
    for _ in range(3):
        branch = (hilum[0] + rng.uniform(-60, 30), hilum[1] + rng.uniform(-40, 40), hilum[2] + rng.uniform(0, 50))
        shapes.tube(tissue, frame, hilum, branch, rng.uniform(3, 5), T.LIVER_VESSEL, allowed=liver)


def _paint_bowel(
    tissue: np.ndarray, frame: AnatomicalFrame, plan: BodyPlan, soft: np.ndarray, rng: np.random.Generator
) -> None:
    free = soft & (tissue == T.VISCERAL_FAT)
    hw, ant, sv = plan.half_width, plan.anterior, plan.spine_v
    # Colon: ascending on the right, descending on the left (lateral-anterior to the kidneys), transverse.
    colon = np.zeros(frame.shape, dtype=bool)
    for points in (
        [(-hw * 0.6, -25, -140), (-hw * 0.62, -30, 10), (-hw * 0.45, -ant * 0.35, 40)],
        [(-hw * 0.45, -ant * 0.35, 40), (0, -ant * 0.55, rng.uniform(10, 40)), (hw * 0.5, -ant * 0.3, 70)],
        [(hw * 0.5, -ant * 0.3, 70), (hw * 0.65, -15, 20), (hw * 0.6, -20, -140)],
    ):
        marker = np.zeros(frame.shape, dtype=np.uint8)
        shapes.polyline_tube(marker, frame, points, rng.uniform(16, 24), 1)
        colon |= marker.astype(bool)
    colon &= free
    # Small bowel: lobulated loops from a smooth random field, in front of the retroperitoneum.
    loops = smooth_noise(frame.shape, frame.spacing, 28, rng)
    small_bowel = free & ~colon & (loops > 0.1) & (frame.v < sv - 25)
    del loops
    thickness = max(1, int(round(2.5 / min(frame.spacing))))
    for region_mask, content in ((small_bowel, T.BOWEL_FLUID), (colon, T.STOOL)):
        lumen = ndimage.binary_erosion(region_mask, iterations=thickness)
        tissue[region_mask] = T.BOWEL_WALL
        tissue[lumen] = content
        gas_field = smooth_noise(frame.shape, frame.spacing, 18, rng)
        gas = lumen & (gas_field > (0.6 if content == T.BOWEL_FLUID else 0.0))
        tissue[gas] = T.GAS


def _paint_spine(tissue: np.ndarray, frame: AnatomicalFrame, plan: BodyPlan, rng: np.random.Generator) -> None:
    sv = plan.spine_v
    semi_u, semi_v = rng.uniform(19, 24), rng.uniform(14, 18)
    period, disc = rng.uniform(32, 38), rng.uniform(7, 10)
    phase = np.mod(frame.w + rng.uniform(0, period), period)
    body_level = phase >= disc
    du, dv = frame.u / semi_u, (frame.v - sv) / semi_v
    r = np.sqrt(du**2 + dv**2)
    cortical_mm = 1.8
    body = (r <= 1) & body_level
    shell = body & ((r > 1 - cortical_mm / semi_v) | (phase < disc + 1.2) | (phase > period - 1.2))
    disc_mask = (r <= 1) & ~body_level
    canal_v = sv + semi_v + 10
    canal = (frame.u**2 + (frame.v - canal_v) ** 2) <= 9.0**2
    ring = ((frame.u**2 + (frame.v - canal_v) ** 2) <= 15.0**2) & ~canal & (frame.v > sv + semi_v - 2)
    arch_level = (phase > disc + 4) & (phase < period - 6)
    spinous = (np.abs(frame.u) < 4.5) & (frame.v > canal_v) & (frame.v < canal_v + 48)
    # Transverse processes: thin, angled slightly backwards, from the pedicles outwards.
    transverse = (np.abs(frame.v - (canal_v + 0.25 * np.abs(frame.u) - 4)) < 3.5) & (np.abs(frame.u) > 10)
    transverse = transverse & (np.abs(frame.u) < rng.uniform(30, 40)) & (phase > disc + 9) & (phase < period - 11)
    posterior = (ring | spinous) & arch_level | transverse
    for mask, value in ((disc_mask, T.DISC), (body, T.BONE_CANCELLOUS), (shell, T.BONE_CORTICAL),
                        (posterior, T.BONE_CORTICAL), (canal, T.CSF)):
        tissue[np.broadcast_to(mask, frame.shape) & (tissue != T.AIR)] = value
    # Cancellous core in the thicker posterior elements.
    core = (np.abs(frame.u) < 2.5) & (frame.v > canal_v + 16) & (frame.v < canal_v + 44) & arch_level
    tissue[np.broadcast_to(core, frame.shape) & (tissue == T.BONE_CORTICAL)] = T.BONE_CANCELLOUS


def _paint_vessels(
    tissue: np.ndarray, frame: AnatomicalFrame, plan: BodyPlan, soft: np.ndarray, rng: np.random.Generator
) -> None:
    sv = plan.spine_v
    aorta_r = rng.uniform(9, 13)
    aorta = (rng.uniform(8, 16), sv - 18 - aorta_r, 0.0)
    ivc = (-rng.uniform(18, 26), sv - 22, 0.0)
    bifurcation = rng.uniform(-110, -70)
    shapes.tube(tissue, frame, (aorta[0], aorta[1], bifurcation), (aorta[0], aorta[1], 400), aorta_r, T.AORTA)
    for side in (-1, 1):
        shapes.tube(tissue, frame, (aorta[0], aorta[1], bifurcation), (side * 60, aorta[1] + 10, bifurcation - 120),
                    aorta_r * 0.6, T.AORTA, allowed=soft)
    # Superior mesenteric artery (left) and vein (right), in the mesenteric fat in front of the aorta.
    for du, radius in ((4.0, rng.uniform(3, 4.5)), (-10.0, rng.uniform(4.5, 6))):
        start = (aorta[0] + du, aorta[1] - aorta_r - 6, rng.uniform(10, 30))
        end = (aorta[0] + du - 15, aorta[1] - aorta_r - 45, -160.0)
        shapes.tube(tissue, frame, start, end, radius, T.MESENTERIC_VESSEL,
                    allowed=(tissue == T.VISCERAL_FAT) | (tissue == T.PANCREAS))
    for w0, w1 in ((-400, 60), (60, 400)):
        shapes.ellipsoid(tissue, frame, (ivc[0], ivc[1], (w0 + w1) / 2), (rng.uniform(10, 14), 8, (w1 - w0) / 2),
                         T.IVC, allowed=soft | (tissue == T.LIVER))
    # Renal arteries from the aorta and renal veins to the IVC, one pair per kidney at its hilum.
    for kidney in frame.kidneys:
        side = 1.0 if kidney.centroid[0] > 0 else -1.0
        half_width = (kidney.upper[0] - kidney.lower[0]) / 2
        hilum = (kidney.centroid[0] - side * half_width * 0.55, kidney.centroid[1] - 6, kidney.centroid[2])
        shapes.tube(tissue, frame, (aorta[0], aorta[1], hilum[2] + 8), (hilum[0], hilum[1] + 4, hilum[2] + 4),
                    rng.uniform(2.5, 3.8), T.RENAL_ARTERY, allowed=soft)
        # The left renal vein crosses in front of the aorta to reach the IVC.
        via = (aorta[0], aorta[1] - aorta_r - 5, hilum[2]) if side > 0 else None
        points = [hilum] + ([via] if via else []) + [(ivc[0], ivc[1], hilum[2])]
        shapes.polyline_tube(tissue, frame, points, rng.uniform(4, 6), T.RENAL_VEIN, allowed=soft)


def _paint_perirenal_fat(tissue: np.ndarray, frame: AnatomicalFrame, mask: np.ndarray, plan: BodyPlan) -> None:
    foreground = mask > 0
    if not foreground.any():
        return
    margin = [int(np.ceil(plan.perirenal_fat / s)) + 1 for s in frame.spacing]
    box = ndimage.find_objects(foreground.astype(np.uint8))[0]
    box = tuple(
        slice(max(0, b.start - m), min(n, b.stop + m)) for b, m, n in zip(box, margin, frame.shape, strict=True)
    )
    distance = ndimage.distance_transform_edt(~foreground[box], sampling=frame.spacing)
    keep = (T.BONE_CORTICAL, T.BONE_CANCELLOUS, T.AORTA, T.IVC, T.RENAL_ARTERY, T.RENAL_VEIN, T.AIR, T.SKIN)
    fat = (distance > 0) & (distance <= plan.perirenal_fat) & ~np.isin(tissue[box], keep)
    tissue[box][fat] = T.PERIRENAL_FAT
