"""Process-wide run settings, one module per job: seeds and threads (``process``), memory held between phases
(``memory``), oneDNN's kernel cache (``onednn_cache``), what the machine has (``hardware``) and what amc keeps
out of its imports (``imports``)."""
