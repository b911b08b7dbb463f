"""``cvkit export``: a trained run as a deployable file (ONNX, TorchScript, safetensors)."""

from cvkit.export.command import FORMATS, ExportResult, export_run

__all__ = ["FORMATS", "ExportResult", "export_run"]
