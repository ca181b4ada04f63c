from keras_mim.targets.pixel_target import denormalize_prediction, patch_statistics, pixel_target
