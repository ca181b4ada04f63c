"""The input of the models that train on view pairs (SiamMAE, CropMAE, iBOT): a dict
`{"reference": (B, H, W, C), "target": (B, H, W, C)}`, checked before Keras traces a step."""

from collections.abc import Mapping

#: The keys of the input dict (SiamMAE / CropMAE: the fully visible view, and the masked
#: view to reconstruct; iBOT: its two global crops, treated alike).
VIEWS = ("reference", "target")


def _shape(x):
    return tuple(None if d is None else int(d) for d in x.shape)


class ViewPairInputs:
    """Mixin of a pretraining model whose input is a dict of two views of one size.

    `split_views` returns `(reference, target)` or raises a clear error; `fit`,
    `evaluate` and `predict` run it on the data's spec before tracing (through
    `EncoderModel._check_data`). Needs `self.encoder` and `self.check_input_size`.
    """

    def split_views(self, views, name="views"):
        """`(reference, target)` from the input dict; raise a clear error on anything else.

        Works on tensors, arrays and shape specs (tf.data `element_spec`)."""
        if not isinstance(views, Mapping):
            raise TypeError(
                f"`{name}` must be a dict {{'reference': images, 'target': images}} of two views "
                f"(B, H, W, C), got {type(views).__name__}."
            )
        missing = [k for k in VIEWS if k not in views]
        extra = sorted(str(k) for k in views if k not in VIEWS)
        if missing or extra:
            raise ValueError(
                f"`{name}` must have exactly the keys {list(VIEWS)}, got {sorted(map(str, views))}"
                f"{' (missing ' + ', '.join(missing) + ')' if missing else ''}."
            )
        reference, target = views["reference"], views["target"]
        for key in VIEWS:
            self.encoder.check_images(views[key], name=f"{name}['{key}']")
        ref_shape, tgt_shape = _shape(reference), _shape(target)
        batches = (ref_shape[0], tgt_shape[0])
        if ref_shape[1:] != tgt_shape[1:] or (None not in batches and batches[0] != batches[1]):
            raise ValueError(
                f"The two views must have the same shape: `{name}['reference']` is {ref_shape} but "
                f"`{name}['target']` is {tgt_shape}; resize the crops to the encoder's image size."
            )
        self.check_input_size(ref_shape, name=name, what="views")
        return reference, target

    def _check_data(self, x):
        spec = self.data_spec(x)  # (views, labels): labels are ignored
        if isinstance(spec, Mapping) or hasattr(spec, "shape"):
            self.split_views(spec, name="x")
        # Generators / PyDatasets cannot be inspected without drawing a batch: `call` checks.
