"""The file names inside the evaluate and gate stages' output folders, fixed and declared
once: the same under DVC (`reports/`) and Kubeflow (the `evaluation` artifact), written by
evaluate and gate and read by gate, register, summary and the report. No heavy imports:
gate and summary read these without loading TensorFlow."""

# evaluate
METRICS_FILE = "metrics.json"  # the few compared metrics per model (what the gate reads)
ALL_METRICS_FILE = "metrics_all.json"  # every metric per model
DVC_METRICS_DIR = "metrics"  # one model's DVC metrics per file: a row per model
PER_GENRE_FILE = "per_genre.json"
BOOTSTRAP_FILE = "bootstrap.json"
THRESHOLDS_FILE = "thresholds.json"  # the served operating point of every model
REPORT_FILE = "evaluation.html"  # the page before the gate's decision
PLOTS_DIR = "plots"  # DVC plots: roc.json, pr.json, history.json, genres/*.png
SCORES_DIR = "scores"  # validation/NAME.csv, test/NAME.csv

# gate
BLESSING_FILE = "blessing.json"
DECIDED_REPORT_FILE = "report.html"  # evaluate's page, opening with the decision
