"""MAE's input pipeline for benchmarks/train_speed.py (the `pipeline` request of a
TensorFlow runner process): JPEG decode, RandomResizedCrop, flip, resize and batch in tf.data.
"""

import time

import numpy as np


SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "retina",
                  "immunohistochemistry", "stereo_motorcycle", "colorwheel")


def source_jpegs(count, seed=0, min_side=256, max_side=512):
    """`count` JPEG strings cut from scikit-image's bundled photos at varied sizes and aspect
    ratios (shorter side uniform in [min_side, max_side], aspect in [3/4, 4/3]), as
    ImageNet-style files would arrive."""
    import skimage.data
    import tensorflow as tf

    photos = []
    for name in SKIMAGE_PHOTOS:
        try:
            image = getattr(skimage.data, name)()
        except Exception:  # not shipped in this version: skip, never download
            continue
        photos.append(np.asarray(image[0] if isinstance(image, tuple) else image)[..., :3])
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        aspect = rng.uniform(3 / 4, 4 / 3)
        h, w = photo.shape[:2]
        ch, cw = (h, min(w, round(h * aspect))) if w / h > aspect else (min(h, round(w / aspect)), w)
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        side = rng.uniform(min_side, max_side)
        scale = side / min(ch, cw)
        crop = tf.image.resize(photo[top:top + ch, left:left + cw], (round(ch * scale), round(cw * scale)),
                               antialias=True)
        out.append(tf.io.encode_jpeg(tf.cast(tf.clip_by_value(tf.round(crop), 0, 255), tf.uint8), quality=90))
    return out


def mae_pipeline(jpegs, image_size, batch_size, fused_decode, seed=0):
    """MAE's pretraining augmentation as a tf.data pipeline: decode, RandomResizedCrop (scale
    0.2-1, ratio 3/4-4/3, keras_mim.data.random_resized_crop_box, torchvision rule), bilinear
    antialiased resize, horizontal flip with p = 0.5, [0, 1] floats, batch, prefetch.
    `fused_decode`: decode only the crop window (tf.image.decode_and_crop_jpeg)."""
    import tensorflow as tf

    from keras_mim.data import random_resized_crop_box

    size = (image_size, image_size)

    def augment(jpeg, seed_pair):
        seeds = tf.random.experimental.stateless_split(seed_pair, 2)
        shape = tf.image.extract_jpeg_shape(jpeg)
        top, left, h, w = random_resized_crop_box(shape[:2], scale=(0.2, 1.0), seed=seeds[0])
        if fused_decode:
            crop = tf.image.decode_and_crop_jpeg(jpeg, tf.stack([top, left, h, w]), channels=3)
        else:
            crop = tf.io.decode_jpeg(jpeg, channels=3)[top:top + h, left:left + w]
        image = tf.image.resize(crop, size, method="bilinear", antialias=True) / 255.0
        return tf.image.stateless_random_flip_left_right(image, seeds[1])

    ds = tf.data.Dataset.from_tensor_slices(tf.stack(jpegs)).repeat()
    seeds = tf.data.Dataset.random(seed=seed).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds)).map(augment, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def do_pipeline(req):
    start = time.perf_counter()
    jpegs = source_jpegs(req["num_source_images"], min_side=req["min_side"], max_side=req["max_side"])
    out = {"source_images": len(jpegs), "prepare_s": time.perf_counter() - start,
           "mean_jpeg_kb": float(np.mean([len(j.numpy()) for j in jpegs]) / 1024), "variants": []}
    for fused in (False, True):
        ds = iter(mae_pipeline(jpegs, req["image_size"], req["batch_size"], fused))
        for _ in range(req["warmup_batches"]):
            batch = next(ds)
        start = time.perf_counter()
        for _ in range(req["batches"]):
            batch = next(ds)
        seconds = time.perf_counter() - start
        assert tuple(batch.shape) == (req["batch_size"], req["image_size"], req["image_size"], 3), batch.shape
        out["variants"].append({
            "name": "decode_and_crop_jpeg + RRC + flip" if fused else "decode_jpeg + RRC + flip",
            "fused_decode": fused, "seconds": seconds,
            "images_per_s": req["batches"] * req["batch_size"] / seconds})
    return out
