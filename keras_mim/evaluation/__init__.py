"""Evaluating pretrained encoders: k-NN on frozen features (linear probes and fine-tuning
are models: `keras_mim.models.LinearProbe`, `keras_mim.models.ImageClassifier`)."""

from keras_mim.evaluation.knn import FeatureExtractor, extract_features, knn_evaluate, knn_scores
