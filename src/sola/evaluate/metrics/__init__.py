"""Evaluation metrics: detection mAP and proposal AR@AN with the official ActivityNet semantics."""

from sola.evaluate.metrics.detection import DetectionResult, evaluate_detection, interpolated_average_precision
from sola.evaluate.metrics.errors import (ERROR_TYPES, FalsePositiveAnalysis, classify_predictions,
                                          false_positive_analysis)
from sola.evaluate.metrics.proposals import ProposalResult, evaluate_proposals
from sola.evaluate.metrics.segments import (ACTIVITYNET_TIOU, THUMOS14_TIOU, TIOU_PRESETS, Segments, parse_tiou,
                                            segment_iou)

__all__ = [
    "ACTIVITYNET_TIOU",
    "THUMOS14_TIOU",
    "TIOU_PRESETS",
    "DetectionResult",
    "ERROR_TYPES",
    "FalsePositiveAnalysis",
    "ProposalResult",
    "Segments",
    "classify_predictions",
    "evaluate_detection",
    "evaluate_proposals",
    "false_positive_analysis",
    "interpolated_average_precision",
    "parse_tiou",
    "segment_iou",
]
