# Tuning stage (`tuning.enabled`): MERBench's random search on the CV folds, the same
# budget for every tuned arm (prmf.tuning). The draws are known at parse time (TUNING,
# seeded by tuning.seed): one GPU-tagged tune_fold job per arm x draw x fold (or, when
# training.pack is not none, one tune_pack job per arm x draw training its folds in one
# process), then one tune_select per arm (validation metrics only) writing chosen.yaml,
# an input of the arm's final training / aggregate_run / evaluate_robustness jobs.


# both layouts are defined (a re-parse elsewhere may resolve training.pack differently);
# training.pack picks one by rule order
if PACK == "none":

    ruleorder: tune_fold > tune_pack

else:

    ruleorder: tune_pack > tune_fold


rule tune_fold:
    input:
        store=rules.prepare_dataset.output.store,
        folds=rules.make_folds.output.folds,
        validation=rules.validate_features.output.json,
    output:
        predictions=f"{TUNING_DIR}/{{arm}}/draw{{draw}}/fold{{fold}}/predictions.npz",
        metrics=f"{TUNING_DIR}/{{arm}}/draw{{draw}}/fold{{fold}}/metrics.json",
        history=f"{TUNING_DIR}/{{arm}}/draw{{draw}}/fold{{fold}}/history.tsv",
    log:
        f"{LOGS}/tune/{{arm}}/draw{{draw}}/fold{{fold}}.log",
    benchmark:
        f"{BENCH}/tune/{{arm}}/draw{{draw}}/fold{{fold}}.tsv"
    wildcard_constraints:
        arm="|".join(TUNED_ARMS) or "(?!)",
        draw=r"\d+",
    conda:
        "../envs/prmf.yaml"
    threads: RUNTIME["threads"]
    resources:
        gpu=TRAIN_GPU,
    params:
        arm=lambda wc: TUNING.draw_params(config, wc.arm, int(wc.draw)),
        members=lambda wc: [[TUNING.draw_seed(int(wc.draw)), int(wc.fold)]],
        device=RUNTIME["device"],
        cuda_graphs=RUNTIME["cuda_graphs"],
    script:
        "../scripts/train.py"


rule tune_pack:
    input:
        store=rules.prepare_dataset.output.store,
        folds=rules.make_folds.output.folds,
        validation=rules.validate_features.output.json,
    output:
        predictions=tune_pack_files("predictions.npz"),
        metrics=tune_pack_files("metrics.json"),
        history=tune_pack_files("history.tsv"),
    log:
        f"{LOGS}/tune/{{arm}}/draw{{draw}}/pack.log",
    benchmark:
        f"{BENCH}/tune/{{arm}}/draw{{draw}}/pack.tsv"
    wildcard_constraints:
        arm="|".join(TUNED_ARMS) or "(?!)",
        draw=r"\d+",
    conda:
        "../envs/prmf.yaml"
    threads: RUNTIME["threads"]
    resources:
        gpu=TRAIN_GPU,
    params:
        arm=lambda wc: TUNING.draw_params(config, wc.arm, int(wc.draw)),
        members=lambda wc: [[TUNING.draw_seed(int(wc.draw)), f] for f in FOLDS],
        device=RUNTIME["device"],
        cuda_graphs=RUNTIME["cuda_graphs"],
    script:
        "../scripts/train.py"


rule tune_select:
    input:
        metrics=tune_metrics,
    output:
        draws=report(
            f"{TUNING_DIR}/{{arm}}/draws.tsv",
            caption="../report/tuning_ranked_draws.rst",
            category="Tuning",
            subcategory="Draws",
            labels={"arm": "{arm}"},
        ),
        chosen=f"{TUNING_DIR}/{{arm}}/chosen.yaml",
        study=f"{TUNING_DIR}/{{arm}}/study.jsonl",
    log:
        f"{LOGS}/tune/{{arm}}/select.log",
    wildcard_constraints:
        arm="|".join(TUNED_ARMS) or "(?!)",
    conda:
        "../envs/prmf.yaml"
    params:
        job=selection_job,
    script:
        "../scripts/tune_select.py"


rule tuning_table:
    input:
        chosen=expand(f"{TUNING_DIR}/{{arm}}/chosen.yaml", arm=TUNED_ARMS),
    output:
        md=report(
            f"{TABLES}/tuning.md",
            caption="../report/tuning.rst",
            category="Tuning",
        ),
    log:
        f"{LOGS}/tables/tuning.log",
    conda:
        "../envs/prmf.yaml"
    params:
        display_names=arm_display_names(),
        dataset=DATASET,
    script:
        "../scripts/tune_table.py"


rule plot_tuning:
    input:
        draws=expand(f"{TUNING_DIR}/{{arm}}/draws.tsv", arm=TUNED_ARMS),
    output:
        png=figure("tuning_draws", category="Tuning")[0],
        svg=figure("tuning_draws", category="Tuning")[1],
    log:
        f"{LOGS}/plots/tuning_draws.log",
    conda:
        "../envs/prmf.yaml"
    params:
        arms=TUNED_ARMS,
        display_names=arm_display_names(),
        metric=TUNING.metric,
    script:
        "../scripts/tune_plot.py"


TUNING_TARGETS = (
    [f"{TABLES}/tuning.md"] + figure_files("tuning_draws") if TUNED_ARMS else []
)


rule tuning:
    input:
        TUNING_TARGETS,


localrules:
    tune_select,
    tuning_table,
    plot_tuning,
    tuning,


EXTRA_TARGETS.append(TUNING_TARGETS)
