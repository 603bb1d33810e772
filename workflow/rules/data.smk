# Data stage: feature store -> validation -> folds.


rule prepare_dataset:
    input:
        unpack(prepare_inputs),
    output:
        store=f"{DATA}/features.h5",
    log:
        f"{LOGS}/prepare_dataset.log",
    benchmark:
        f"{BENCH}/prepare_dataset.tsv"
    conda:
        "../envs/prmf.yaml"
    params:
        dataset=dataset_params(),
        workers=config["dataset"]["import_workers"],
    script:
        "../scripts/prepare_dataset.py"


rule validate_features:
    input:
        store=rules.prepare_dataset.output.store,
    output:
        json=f"{DATA}/validation.json",
        md=report(
            f"{DATA}/validation.md",
            caption="../report/validation.rst",
            category="Data",
        ),
    log:
        f"{LOGS}/validate_features.log",
    conda:
        "../envs/prmf.yaml"
    params:
        expected_dims=expected_dims(),
    script:
        "../scripts/validate_features.py"


rule make_folds:
    input:
        store=rules.prepare_dataset.output.store,
        validation=rules.validate_features.output.json,
    output:
        folds=f"{DATA}/folds.json",
    log:
        f"{LOGS}/make_folds.log",
    conda:
        "../envs/prmf.yaml"
    params:
        n_folds=config["cv"]["folds"],
        split_seed=config["cv"]["split_seed"],
    script:
        "../scripts/make_folds.py"
