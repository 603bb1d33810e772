# Training stage: GPU-tagged training jobs, then one aggregation per run arm x seed (an
# arm identical to an earlier one reads its folds). Every layout's rule is defined, all
# writing the same per-fold files, and training.pack picks one by rule order: train_fold
# (one fold per job), train_pack_seed (an arm x seed's folds), train_pack /
# train_pack_tuned (an arm's seeds x folds; a tuned arm's seeds are tuning's). Defining
# them all keeps every job runnable wherever the workflow is re-parsed (a cluster node
# may resolve training.pack: auto differently from the submitting host).

if PACK == "seeds":

    ruleorder: train_pack > train_pack_tuned > train_pack_seed > train_fold

elif PACK == "folds":

    ruleorder: train_pack_seed > train_fold > train_pack > train_pack_tuned

else:

    ruleorder: train_fold > train_pack_seed > train_pack > train_pack_tuned


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
        members=lambda wc: [[int(wc.seed), int(wc.fold)]],
        device=RUNTIME["device"],
        cuda_graphs=RUNTIME["cuda_graphs"],
    script:
        "../scripts/train.py"


rule train_pack:
    input:
        unpack(chosen_input),
        store=rules.prepare_dataset.output.store,
        folds=rules.make_folds.output.folds,
        validation=rules.validate_features.output.json,
    output:
        model=pack_files("model.pt", SEEDS),
        predictions=pack_files("predictions.npz", SEEDS),
        metrics=pack_files("metrics.json", SEEDS),
        history=pack_files("history.tsv", SEEDS),
    log:
        f"{LOGS}/train/{{arm}}/pack.log",
    benchmark:
        f"{BENCH}/train/{{arm}}/pack.tsv"
    wildcard_constraints:
        arm="|".join(seed_packed_arms(tuned=False)) or "(?!)",
    conda:
        "../envs/prmf.yaml"
    threads: RUNTIME["threads"]
    resources:
        gpu=TRAIN_GPU,
    params:
        arm=arm_params,
        members=lambda wc: pack_members(wc, SEEDS),
        device=RUNTIME["device"],
        cuda_graphs=RUNTIME["cuda_graphs"],
    script:
        "../scripts/train.py"


# a tuned arm's final runs use tuning's seeds (0 .. final_seeds-1)
use rule train_pack as train_pack_tuned with:
    output:
        model=pack_files("model.pt", TUNING.final_seeds),
        predictions=pack_files("predictions.npz", TUNING.final_seeds),
        metrics=pack_files("metrics.json", TUNING.final_seeds),
        history=pack_files("history.tsv", TUNING.final_seeds),
    wildcard_constraints:
        arm="|".join(seed_packed_arms(tuned=True)) or "(?!)",
    params:
        arm=arm_params,
        members=lambda wc: pack_members(wc, TUNING.final_seeds),
        device=RUNTIME["device"],
        cuda_graphs=RUNTIME["cuda_graphs"],


# the folds of one arm x seed
use rule train_pack as train_pack_seed with:
    output:
        model=pack_files("model.pt"),
        predictions=pack_files("predictions.npz"),
        metrics=pack_files("metrics.json"),
        history=pack_files("history.tsv"),
    log:
        f"{LOGS}/train/{{arm}}/seed{{seed}}/pack.log",
    benchmark:
        f"{BENCH}/train/{{arm}}/seed{{seed}}/pack.tsv"
    wildcard_constraints:
        arm="|".join(TRAINED_ARMS),
    params:
        arm=arm_params,
        members=pack_members,
        device=RUNTIME["device"],
        cuda_graphs=RUNTIME["cuda_graphs"],


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
