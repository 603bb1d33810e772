# Report stage: best-of-runs extraction from MERBench-named exports, paper tables.
#
# Every table is its own rule with only the inputs it reads, so e.g.
# `snakemake results/tables/ablation.md` trains only the ablation arms.


rule extract_best:
    input:
        exports=export_dirs(),
        external=existing_external_result_dirs,
    output:
        md=report(
            f"{TABLES}/best_results.md",
            caption="../report/best_results.rst",
            category="Tables",
        ),
        tsv=report(
            f"{TABLES}/best_results.tsv",
            caption="../report/best_results.rst",
            category="Tables",
        ),
    log:
        f"{LOGS}/tables/extract_best.log",
    conda:
        "../envs/prmf.yaml"
    params:
        result_dirs=RESULT_DIRS,
        display_names=model_display_names(config),
    script:
        "../scripts/extract_best.py"


rule comparison_table:
    input:
        summaries=run_summaries(ARMS),
        exports=export_dirs(),
        external=existing_external_result_dirs,
    output:
        md=report(
            f"{TABLES}/comparison.md",
            caption="../report/comparison.rst",
            category="Tables",
        ),
    log:
        f"{LOGS}/tables/comparison.log",
    conda:
        "../envs/prmf.yaml"
    params:
        table="comparison",
        arms=arm_table_params(),
        result_dirs=RESULT_DIRS,
        display_names=model_display_names(config),
        tuning=TUNING.budgets(ARMS),
    script:
        "../scripts/make_tables.py"


rule prmf_best_table:
    input:
        summaries=run_summaries([REFERENCE_ARM] if REFERENCE_ARM in ARMS else []),
    output:
        md=report(
            f"{TABLES}/prmf_best.md",
            caption="../report/prmf_best.rst",
            category="Tables",
        ),
    log:
        f"{LOGS}/tables/prmf_best.log",
    conda:
        "../envs/prmf.yaml"
    params:
        table="prmf_best",
        arm=REFERENCE_ARM,
    script:
        "../scripts/make_tables.py"


rule sources_table:
    input:
        exports=export_dirs(),
        external=existing_external_result_dirs,
    output:
        md=report(
            f"{TABLES}/sources.md",
            caption="../report/sources.rst",
            category="Tables",
        ),
    log:
        f"{LOGS}/tables/sources.log",
    conda:
        "../envs/prmf.yaml"
    params:
        table="sources",
        result_dirs=RESULT_DIRS,
    script:
        "../scripts/make_tables.py"


rule ablation_table:
    input:
        summaries=run_summaries(ABLATION_RUN_ARMS),
    output:
        md=report(
            f"{TABLES}/ablation.md",
            caption="../report/ablation.rst",
            category="Tables",
        ),
    log:
        f"{LOGS}/tables/ablation.log",
    conda:
        "../envs/prmf.yaml"
    params:
        table="ablation",
        arms=arm_table_params(),
        ablation_arms=config["tables"]["ablation_arms"],
        reference=REFERENCE_ARM,
        tuning=TUNING.budgets(ABLATION_RUN_ARMS),
    script:
        "../scripts/make_tables.py"


TABLE_TARGETS = [
    f"{TABLES}/best_results.md",
    f"{TABLES}/best_results.tsv",
    f"{TABLES}/comparison.md",
    f"{TABLES}/sources.md",
    f"{TABLES}/ablation.md",
] + ([f"{TABLES}/prmf_best.md"] if REFERENCE_ARM in ARMS else [])


rule tables:
    input:
        TABLE_TARGETS,


EXTRA_TARGETS.append(TABLE_TARGETS)
