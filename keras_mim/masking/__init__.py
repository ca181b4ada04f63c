"""Mask generators: each decides which tokens to hide; `select_tokens` applies the decision."""

import functools
import inspect

from keras_mim.masking.block_mask_generator import BlockMaskGenerator
from keras_mim.masking.color_noise_mask_generator import ColorNoiseMaskGenerator
from keras_mim.masking.dirichlet_mask_generator import DirichletMaskGenerator
from keras_mim.masking.disjoint_mask_generator import DisjointMaskGenerator, duplicate_for_disjoint
from keras_mim.masking.easy_to_hard_mask_generator import EasyToHardMaskGenerator
from keras_mim.masking.grid_mask_generator import GridMaskGenerator
from keras_mim.masking.guided_mask_generator import GuidedMaskGenerator
from keras_mim.masking.mask_generator import MaskGenerator
from keras_mim.masking.multi_block_mask_generator import MultiBlockMaskGenerator
from keras_mim.masking.random_mask_generator import RandomMaskGenerator
from keras_mim.masking.running_cell_mask_generator import RunningCellMaskGenerator
from keras_mim.masking.selection import num_visible, select_tokens
from keras_mim.masking.simmim_mask_generator import SimMIMMaskGenerator
from keras_mim.masking.time_frequency_mask_generator import TimeFrequencyMaskGenerator
from keras_mim.masking.tube_mask_generator import TubeMaskGenerator

#: Strategy name -> constructor. The ColorMAE colours are names of their own.
MASK_GENERATORS = {
    "random": RandomMaskGenerator,
    "block": BlockMaskGenerator,
    "simmim": SimMIMMaskGenerator,
    "grid": GridMaskGenerator,
    **{c: functools.partial(ColorNoiseMaskGenerator, color=c) for c in ("red", "blue", "green", "purple")},
    "tube": TubeMaskGenerator,
    "running_cell": RunningCellMaskGenerator,
    "disjoint": DisjointMaskGenerator,
    "guided": GuidedMaskGenerator,
    "easy_to_hard": EasyToHardMaskGenerator,
    "multi_block": MultiBlockMaskGenerator,
    "time_frequency": TimeFrequencyMaskGenerator,
    "dirichlet": DirichletMaskGenerator,
}


def _accepts(factory):
    target = factory.func if isinstance(factory, functools.partial) else factory
    return set(inspect.signature(target.__init__).parameters) - {"self", "kwargs"}


def get_mask_generator(identifier, mask_ratio=None, seed=None, patch_size=None, **kwargs):
    """A mask generator from a name in `MASK_GENERATORS`, a config dict, or an instance.

    Args:
        identifier: strategy name (`"random"`, `"green"`, ...), a serialized config, or a
            `MaskGenerator` (returned as is).
        mask_ratio: hidden fraction, for strategies that take one (None: their default;
            the grid strategy derives it from its stride and only checks it).
        seed: optional int seed.
        patch_size: the model's patch size in pixels, for strategies that work in pixels
            (SimMIM's `model_patch_size`).
        **kwargs: further constructor arguments of that strategy.

    Examples:
        >>> gen = get_mask_generator("green", mask_ratio=0.75, seed=0)
        >>> type(gen).__name__, gen.color
        ('ColorNoiseMaskGenerator', 'green')
    """
    if isinstance(identifier, MaskGenerator):
        return identifier
    if isinstance(identifier, dict):
        import keras

        return keras.saving.deserialize_keras_object(identifier)
    if identifier not in MASK_GENERATORS:
        raise ValueError(
            f"Unknown `mask_generator` {identifier!r}; expected one of "
            f"{sorted(MASK_GENERATORS)} or a MaskGenerator instance."
        )
    factory = MASK_GENERATORS[identifier]
    accepted = _accepts(factory)
    if patch_size is not None and "model_patch_size" in accepted:
        kwargs.setdefault("model_patch_size", patch_size)
    if mask_ratio is not None and "mask_ratio" in accepted:
        kwargs["mask_ratio"] = mask_ratio
    generator = factory(seed=seed, **kwargs)
    if mask_ratio is not None and "mask_ratio" not in accepted and abs(generator.mask_ratio - mask_ratio) > 1e-6:
        raise ValueError(
            f"The {identifier!r} strategy hides {generator.mask_ratio:.4f} of the tokens (set by its "
            f"other arguments), not `mask_ratio`={mask_ratio!r}."
        )
    return generator
