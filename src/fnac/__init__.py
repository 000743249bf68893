"""fnac: self-supervised audio-visual sound source localization (FNAC, CVPR 2023).

Public API (stable names): FNAC, load_checkpoint, and the modules fnac.losses, fnac.audio,
fnac.vision, fnac.metrics. Importing fnac has no side effects.
"""

from fnac.checkpoint import load_checkpoint
from fnac.models.fnac import FNAC

__version__ = "0.1.0"
__all__ = ["FNAC", "load_checkpoint", "__version__"]
