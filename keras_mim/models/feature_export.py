"""Exporting an encoder's features for serving, through Keras' own `Model.export`.

The encoder is wrapped in a functional model `images -> encoder(images)` (its output tokens,
`(B, [1 +] N, D)`), which Keras exports on every backend; the wrapper has one plain input,
so exporters need no knowledge of the encoder's keyword arguments (`ids_keep`, ...).

What each backend can write (Keras 3.15, measured here, docs/export.md):
- TensorFlow and JAX: `format="tf_saved_model"` (the default), any batch size; serve it with
  `tf.saved_model.load(path).serve(images)` or TF Serving.
- PyTorch: `format="torch"` (a `.pt2` ExportedProgram; `torch.export.load(path).module()`),
  traced at `batch_size` (default 1; pass Keras' `dynamic_shapes=` for a free batch).
  Keras' `tf_saved_model` on PyTorch needs torch-xla, which has no CPU build for torch 2.13.
- ONNX (`format="onnx"`) is passed to Keras as asked; with tf2onnx 1.17 (TensorFlow) the file
  did not load in onnxruntime (exact GELU becomes `Erfc`), and on PyTorch Keras' exporter failed
  inside `keras.ops.layer_norm` (torch 2.13); docs/checkpoints.md.
"""

import keras


class FeatureExport:
    """`export` for encoder classes (mixed into `keras.Model` subclasses keeping the encoder
    protocol: `input_size`, `num_channels`)."""

    def feature_model(self):
        """A functional model `images -> self(images)`: one input named `images`."""
        inputs = keras.Input(tuple(self.input_size) + (self.num_channels,), name="images")
        return keras.Model(inputs, self(inputs), name=f"{self.name}_features")

    def export(self, filepath, format=None, verbose=None, input_signature=None, batch_size=None, **kwargs):
        """Export the encoder's features for inference with Keras' `Model.export`.

        Args:
            filepath: where to write (a folder for `tf_saved_model`, a `.pt2` file for `torch`).
            format: a Keras export format; default `"torch"` on the PyTorch backend, else
                `"tf_saved_model"`.
            verbose: as Keras.
            input_signature: as Keras; default: images of this encoder's size and channels,
                batch `batch_size`.
            batch_size: the batch dimension of the default signature (default: any batch,
                where the format allows; 1 for `format="torch"`).
            **kwargs: the format's own options (Keras: `jax2tf_kwargs`, `dynamic_shapes`, ...).

        Examples:
            >>> from keras_mim.models import ViTEncoder
            >>> enc = ViTEncoder(image_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2)
            >>> enc.export("/tmp/vit_features", verbose=False)  # doctest: +SKIP
        """
        if format is None:
            format = "torch" if keras.backend.backend() == "torch" else "tf_saved_model"
        if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                       or batch_size < 1):
            raise ValueError(f"`batch_size` must be a positive int or None, got {batch_size!r}.")
        if input_signature is None:
            batch = batch_size if batch_size is not None or format != "torch" else 1
            shape = (batch,) + tuple(self.input_size) + (self.num_channels,)
            input_signature = [keras.InputSpec(shape=shape, dtype="float32")]
        self.feature_model().export(filepath, format=format, verbose=verbose, input_signature=input_signature, **kwargs)
