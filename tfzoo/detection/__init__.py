"""D&T building blocks (thesis ch. 8): box ops, training targets, VID evaluation, tube linking,
the RoI tracking layer with its targets and loss, the embedded synthetic detection set. The layers (PSRoIPooling, Correlation) are in
tfzoo.layers."""

from tfzoo.detection.boxes import (
    BOX_STDS, box_area, clip_boxes, decode_boxes, encode_boxes, generate_anchors, iou_matrix, nms,
    nms_box_voting, remove_small_boxes, shifted_anchors,
)
from tfzoo.detection.dataset import DetectionDataset, DetectionVideo, read_detection_dataset
from tfzoo.detection.evaluation import evaluate_vid, motion_ious, track_consistency, voc_ap
from tfzoo.detection.inference import evaluation_rows, link_video
from tfzoo.detection.linking import link_tubes
from tfzoo.detection.targets import (
    anchor_targets, box_target_statistics, ohem_select, roi_targets)
from tfzoo.detection.tracking import (
    RoITracking, smooth_l1, tracking_loss, tracking_rois, tracking_targets,
)

__all__ = [
    "BOX_STDS", "box_area", "clip_boxes", "decode_boxes", "encode_boxes", "generate_anchors",
    "iou_matrix", "nms", "nms_box_voting", "remove_small_boxes", "shifted_anchors",
    "anchor_targets", "box_target_statistics", "ohem_select", "roi_targets", "evaluate_vid", "motion_ious",
    "track_consistency", "voc_ap",
    "link_tubes", "link_video", "evaluation_rows", "DetectionDataset", "DetectionVideo", "read_detection_dataset",
    "RoITracking", "smooth_l1", "tracking_loss", "tracking_rois", "tracking_targets",
]
