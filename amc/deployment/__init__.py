"""Deployment: ONNX export checked with onnxruntime (``onnx_export``) and the deploy job (``jobs``)."""
