"""Every figure the project draws, under one name: curves, filters, feature maps, predictions.

The figures live in modules of their own: ``canvas`` (the Agg figure and its
atomic saving), ``history`` (training curves), ``filters`` (learned and
classic kernels), ``maps`` (feature maps, an input and its probabilities)
and ``evaluation`` (predictions, the confusion matrix, a checkpoint's
pictures). This module gathers the names callers use.
"""
from convnet.apps.pictures.canvas import DIVERGING_CMAP, DPI, new_figure, save_figure
from convnet.apps.pictures.evaluation import (
    CONFUSION_SIZE,
    PREDICTIONS_SIZE,
    class_probabilities,
    confusion_matrix,
    draw_checkpoint_pictures,
    draw_confusion_matrix,
    draw_predictions,
    predicted_classes,
)
from convnet.apps.pictures.filters import (
    CLASSIC_KERNELS,
    CLASSIC_SIZE,
    CLASSIC_TITLES,
    FILTER_COLUMNS,
    FILTERS_SIZE,
    SAMPLE_PHOTO,
    SIGNED_FILTERS,
    apply_classic_filters,
    colour_patches,
    draw_classic_filters,
    draw_classic_filters_of,
    draw_colour_filters,
    draw_first_layer_filters,
    draw_kernels,
    filter_colour_limit,
    filters_size,
    first_conv_kernels,
    load_grayscale,
    sample_photo_path,
)
from convnet.apps.pictures.history import HISTORY_KEYS, HISTORY_SIZE, plot_history
from convnet.apps.pictures.maps import (
    FEATURE_MAPS_WIDTH,
    INPUT_SIZE,
    draw_feature_maps,
    draw_image_maps,
    draw_input_and_probabilities,
    feature_maps_size,
    input_picture_names,
    model_maps,
)

__all__ = [
    "CLASSIC_KERNELS", "CLASSIC_SIZE", "CLASSIC_TITLES", "CONFUSION_SIZE", "DIVERGING_CMAP",
    "DPI", "FEATURE_MAPS_WIDTH", "FILTERS_SIZE", "FILTER_COLUMNS", "HISTORY_KEYS",
    "HISTORY_SIZE", "INPUT_SIZE", "PREDICTIONS_SIZE", "SAMPLE_PHOTO",
    "SIGNED_FILTERS", "apply_classic_filters", "class_probabilities", "colour_patches",
    "confusion_matrix", "draw_checkpoint_pictures", "draw_classic_filters",
    "draw_classic_filters_of", "draw_colour_filters", "draw_confusion_matrix",
    "draw_feature_maps", "draw_first_layer_filters", "draw_image_maps",
    "draw_input_and_probabilities", "draw_kernels", "draw_predictions", "feature_maps_size",
    "filter_colour_limit", "filters_size", "first_conv_kernels", "input_picture_names",
    "load_grayscale", "model_maps", "new_figure", "plot_history", "predicted_classes",
    "sample_photo_path", "save_figure",
]
