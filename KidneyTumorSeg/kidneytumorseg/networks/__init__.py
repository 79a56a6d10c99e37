"""The configurable U-Net family of the engine (plain, residual and pre-activation residual encoders).

``plan_network`` derives a topology nnU-Net style from a patch size and spacing, ``NetworkConfig`` stores it
(JSON-safe, in model packages), ``build_network`` turns it into a ``torch.nn.Module``.
"""

from kidneytumorseg.networks.config import NetworkConfig, NetworkConfigError
from kidneytumorseg.networks.planning import plan_network
from kidneytumorseg.networks.unet import UNet, build_network, count_parameters

__all__ = ["NetworkConfig", "NetworkConfigError", "UNet", "build_network", "count_parameters", "plan_network"]
