from keras_mim.masking.mask_generator import MaskGenerator
from keras_mim.masking.random_mask_generator import RandomMaskGenerator
from keras_mim.masking.selection import num_visible, select_tokens

MASK_GENERATORS = {"random": RandomMaskGenerator}


def get_mask_generator(identifier, mask_ratio=0.75, seed=None):
    """A mask generator from a name (`"random"`), a config dict, or an instance."""
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
    return MASK_GENERATORS[identifier](mask_ratio=mask_ratio, seed=seed)
