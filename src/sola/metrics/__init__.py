"""Evaluation metrics: detection mAP and proposal AR@AN with the official ActivityNet semantics."""

from sola.metrics.detection import DetectionResult, evaluate_detection, interpolated_average_precision
from sola.metrics.proposals import ProposalResult, evaluate_proposals
from sola.metrics.segments import (
    ACTIVITYNET_TIOU,
    THUMOS14_TIOU,
    TIOU_PRESETS,
    Segments,
    parse_tiou,
    segment_iou,
)

__all__ = [
    "ACTIVITYNET_TIOU",
    "THUMOS14_TIOU",
    "TIOU_PRESETS",
    "DetectionResult",
    "ProposalResult",
    "Segments",
    "evaluate_detection",
    "evaluate_proposals",
    "interpolated_average_precision",
    "parse_tiou",
    "segment_iou",
]
