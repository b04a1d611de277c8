"""Datasets: COCO reader, crops and augmentation, heatmap targets, synthetic data."""
