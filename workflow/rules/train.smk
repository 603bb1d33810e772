# Training stage: one GPU-tagged job per trained arm x seed x fold, then one
# aggregation per run arm x seed (an arm identical to an earlier one reads its folds).


rule train_fold:
    input:
        unpack(chosen_input),
        store=rules.prepare_dataset.output.store,
        folds=rules.make_folds.output.folds,
        validation=rules.validate_features.output.json,
    output:
        model=f"{RUNS}/{{arm}}/seed{{seed}}/fold{{fold}}/model.pt",
        predictions=f"{RUNS}/{{arm}}/seed{{seed}}/fold{{fold}}/predictions.npz",
        metrics=f"{RUNS}/{{arm}}/seed{{seed}}/fold{{fold}}/metrics.json",
        history=f"{RUNS}/{{arm}}/seed{{seed}}/fold{{fold}}/history.tsv",
    log:
        f"{LOGS}/train/{{arm}}/seed{{seed}}/fold{{fold}}.log",
    benchmark:
        f"{BENCH}/train/{{arm}}/seed{{seed}}/fold{{fold}}.tsv"
    wildcard_constraints:
        arm="|".join(TRAINED_ARMS),
    conda:
        "../envs/prmf.yaml"
    threads: RUNTIME["threads"]
    resources:
        gpu=TRAIN_GPU,
    params:
        arm=arm_params,
        device=RUNTIME["device"],
        cuda_graphs=RUNTIME["cuda_graphs"],
    script:
        "../scripts/train_fold.py"


rule aggregate_run:
    input:
        unpack(chosen_input),
        predictions=lambda wc: fold_files(wc, "predictions.npz"),
        metrics=lambda wc: fold_files(wc, "metrics.json"),
    output:
        summary=f"{RUNS}/{{arm}}/seed{{seed}}/summary.json",
        cv=f"{RUNS}/{{arm}}/seed{{seed}}/predictions_cv.npz",
        test1=f"{RUNS}/{{arm}}/seed{{seed}}/predictions_test1.npz",
        exports=directory(f"{EXPORTS}/{{arm}}/seed{{seed}}"),
    log:
        f"{LOGS}/aggregate/{{arm}}/seed{{seed}}.log",
    benchmark:
        f"{BENCH}/aggregate/{{arm}}/seed{{seed}}.tsv"
    conda:
        "../envs/prmf.yaml"
    params:
        arm=arm_params,
        dataset=DATASET,
        features=feature_names(),
    script:
        "../scripts/aggregate_run.py"
