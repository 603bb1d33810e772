# Robustness stage: missing / noisy modalities, evaluated with the trained fold
# models of every arm x seed (inference only), then a table and figures.
# Protocol settings: prmf.robustness.RobustnessConfig, overridable by an optional
# `robustness:` block of the config.


rule evaluate_robustness:
    input:
        unpack(chosen_input),
        store=rules.prepare_dataset.output.store,
        folds=rules.make_folds.output.folds,
        models=lambda wc: fold_files(wc, "model.pt"),
        summary=f"{RUNS}/{{arm}}/seed{{seed}}/summary.json",
    output:
        tsv=f"{ROBUSTNESS_DIR}/{{arm}}/seed{{seed}}.tsv",
    log:
        f"{LOGS}/robustness/{{arm}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/robustness/{{arm}}/seed{{seed}}.tsv"
    conda:
        "../envs/prmf.yaml"
    threads: RUNTIME["threads"]
    params:
        arm=arm_params,
        protocol=ROBUSTNESS,
        device=RUNTIME["device"],
    script:
        "../scripts/evaluate_robustness.py"


rule robustness_table:
    input:
        tsvs=robustness_tsvs(),
    output:
        md=report(
            ROBUSTNESS_TABLE,
            caption="../report/robustness.rst",
            category="Robustness",
            subcategory="Tables",
        ),
    log:
        f"{LOGS}/robustness/table.log",
    conda:
        "../envs/prmf.yaml"
    params:
        display_names=arm_display_names(),
        modalities=config["dataset"]["modalities"],
        protocol=ROBUSTNESS,
        dataset=DATASET,
    script:
        "../scripts/robustness_table.py"


rule plot_missing_rate:
    input:
        tsvs=robustness_tsvs(),
    output:
        png=figure("robustness_missing_rate")[0],
        svg=figure("robustness_missing_rate")[1],
    log:
        f"{LOGS}/plots/robustness_missing_rate.log",
    conda:
        "../envs/prmf.yaml"
    params:
        display_names=arm_display_names(),
        rates=ROBUSTNESS["missing_rates"],
        n_modalities=len(config["dataset"]["modalities"]),
        splits=ROBUSTNESS["splits"],
    script:
        "../scripts/plot_missing_rate.py"


rule plot_subsets:
    input:
        tsvs=robustness_tsvs(),
    output:
        png=figure("robustness_subsets")[0],
        svg=figure("robustness_subsets")[1],
    log:
        f"{LOGS}/plots/robustness_subsets.log",
    conda:
        "../envs/prmf.yaml"
    params:
        display_names=arm_display_names(),
        modalities=config["dataset"]["modalities"],
        split=ROBUSTNESS_FIGURE_SPLIT,
    script:
        "../scripts/plot_subsets.py"


rule plot_fusion_weights:
    input:
        tsvs=robustness_tsvs(),
    output:
        png=figure("robustness_fusion_weights")[0],
        svg=figure("robustness_fusion_weights")[1],
    log:
        f"{LOGS}/plots/robustness_fusion_weights.log",
    conda:
        "../envs/prmf.yaml"
    params:
        display_names=arm_display_names(),
        modalities=config["dataset"]["modalities"],
        snr_db=ROBUSTNESS["snr_db"],
        split=ROBUSTNESS_FIGURE_SPLIT,
    script:
        "../scripts/plot_fusion_weights.py"


rule plot_training_curves:
    input:
        histories=lambda wc: fold_files(wc, "history.tsv", seeds=arm_seeds(wc.arm)),
    output:
        png=report(
            f"{PLOTS}/training_curves/{{arm}}.png",
            caption="../report/training_curves.rst",
            category="Training",
            subcategory="Training curves",
            labels={"arm": "{arm}", "format": "PNG"},
        ),
        svg=report(
            f"{PLOTS}/training_curves/{{arm}}.svg",
            caption="../report/training_curves.rst",
            category="Training",
            subcategory="Training curves",
            labels={"arm": "{arm}", "format": "SVG"},
        ),
    log:
        f"{LOGS}/plots/training_curves/{{arm}}.log",
    conda:
        "../envs/prmf.yaml"
    params:
        display_name=lambda wc: resolve_arm(config, wc.arm)["display_name"],
    script:
        "../scripts/plot_training_curves.py"


ROBUSTNESS_TARGETS = (
    [ROBUSTNESS_TABLE]
    + figure_files("robustness_missing_rate")
    + figure_files("robustness_subsets")
    + figure_files("robustness_fusion_weights")
    + expand(f"{PLOTS}/training_curves/{{arm}}.{{ext}}", arm=ARMS, ext=FIGURE_FORMATS)
)


rule robustness:
    input:
        ROBUSTNESS_TARGETS,


EXTRA_TARGETS.append(ROBUSTNESS_TARGETS)
