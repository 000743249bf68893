from fnac.models.fnac import FNAC, ObjectNet, pair_maps
from fnac.models.resnet import ResNet18Trunk

__all__ = ["FNAC", "ObjectNet", "ResNet18Trunk", "pair_maps"]
