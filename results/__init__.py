"""Results: MLflow runs → tidy DataFrame → the paper's tables (LaTeX/Markdown/CSV) and figures.

Modules, one job each: ``schema`` (MLflow names, tracking URI), ``collect`` (runs → DataFrame, Parquet
cache), ``scores`` (ΔT and the dense reference), ``tables`` (comparison/tasks/cost/ablation/sweep),
``render`` (LaTeX via pandas Styler, Markdown, CSV), ``plots`` (matplotlib), ``cli`` (``table``/``plot``).
Imports stay lazy here so ``from results.scores import delta_t`` (the engine) pulls in nothing heavy.
"""
