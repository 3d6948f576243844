"""Config loading: layers, overrides, type coercion, validation messages, save/load."""

import dataclasses
import os

import pytest
import yaml

from jax_mat import config as config_lib
from jax_mat.config import AlgoConfig, Config, EnvConfig, TrainConfig, load_config

CONFIGS = config_lib.CONFIGS_DIR
SMAC_STANDIN = "jax_mat.standins.smax_smac:StarCraft2Env"


# --------------------------------------------------------------------------- #
# Defaults and layering                                                         #
# --------------------------------------------------------------------------- #


def test_default_run_is_mat_on_3m_with_the_reports_settings():
    cfg = load_config()
    assert cfg.env == EnvConfig(name="smax", map="3m")
    assert cfg.algo == AlgoConfig()  # the schema holds the report's defaults; default.yaml only the budget
    assert cfg.train == TrainConfig(total_steps=960_000, checkpoint_every=25)
    assert cfg.seed == 0 and cfg.run_name == "mat-smax-3m"
    assert cfg.batch_size == 3200 and cfg.num_updates == 300 and cfg.minibatch_size == 3200


def test_dataclass_defaults_are_a_valid_config():
    assert Config().num_updates == 1_000_000 // 3200


def test_overrides_are_coerced_to_the_declared_types():
    cfg = load_config(
        overrides=[
            "train.total_steps=2e6",
            "algo.lr=1e-3",
            "algo.max_grad_norm=1",
            "algo.use_huber_loss=false",
            "algo.num_mini_batch=4",
            "seed=3",
            "name=my run",
        ]
    )
    assert cfg.train.total_steps == 2_000_000 and type(cfg.train.total_steps) is int
    assert cfg.algo.lr == 1e-3 and type(cfg.algo.lr) is float
    assert cfg.algo.max_grad_norm == 1.0 and type(cfg.algo.max_grad_norm) is float
    assert cfg.algo.use_huber_loss is False
    assert cfg.seed == 3 and cfg.run_name == "my run"
    assert cfg.num_updates == 625 and cfg.minibatch_size == 800


def test_env_map_override_applies_the_per_map_file():
    cfg = load_config(overrides=["env.map=6h_vs_8z"])
    assert (cfg.env.map, cfg.algo.ppo_epochs, cfg.train.total_steps) == ("6h_vs_8z", 15, 10_000_000)


def test_explicit_override_beats_the_per_map_file_whatever_the_order():
    for overrides in (["env.map=25m", "algo.ppo_epochs=5"], ["algo.ppo_epochs=5", "env.map=25m"]):
        cfg = load_config(overrides=overrides)
        assert (cfg.env.map, cfg.algo.ppo_epochs, cfg.train.total_steps) == ("25m", 5, 2_000_000)


def test_algo_selector_loads_mat_dec():
    cfg = load_config(overrides=["algo=mat_dec"])
    # upstream's train_*.py force share_actor=True for mat_dec
    assert (cfg.algo.name, cfg.algo.dec_actor, cfg.algo.share_actor) == ("mat_dec", True, True)
    assert cfg.run_name == "mat_dec-smax-3m"
    assert cfg.algo.network_config().dec_actor is True
    assert cfg.algo.network_config().share_actor is True


def test_algo_selectors_load_marwkv_versions_and_the_hybrid():
    for selector, name, version, run in (
        ("marwkv", "marwkv", 4, "marwkv-smax-3m"),
        ("marwkv_v5", "marwkv", 5, "marwkv_v5-smax-3m"),
        ("marwkv_v6", "marwkv", 6, "marwkv_v6-smax-3m"),
        ("mat_rwkv", "mat_rwkv", 4, "mat_rwkv-smax-3m"),
    ):
        cfg = load_config(overrides=[f"algo={selector}"])
        assert (cfg.algo.name, cfg.algo.rwkv_version, cfg.algo.lr, cfg.run_name) == (name, version, 1e-3, run)
        net = cfg.algo.network_config()
        assert (net.version, net.hybrid, net.n_embd) == (version, name == "mat_rwkv", 64)


def test_domain_settings_of_an_algorithm_apply_after_selectors_and_before_explicit_keys(tmp_path):
    # MARWKV's SMAC learning rate (report Table 2) lives in jax_mat/configs/algo/smac/marwkv.yaml, not in the
    # algorithm's own file, so that other domains keep their own learning rates.
    assert "lr" not in yaml.safe_load((CONFIGS / "algo" / "marwkv.yaml").read_text())["algo"]
    assert load_config("smax_3m", ["algo=marwkv"]).algo.lr == 1e-3
    assert load_config(overrides=["algo=marwkv", "algo=mat"]).algo.lr == 5e-4
    assert load_config(overrides=["algo.lr=3e-3", "algo=marwkv"]).algo.lr == 3e-3
    (tmp_path / "mine.yaml").write_text("algo: {name: marwkv, lr: 2e-3}\n")  # a file the run names wins too
    assert load_config(str(tmp_path / "mine.yaml")).algo.lr == 2e-3


def test_experiments_by_name_and_by_path():
    by_name = load_config("smax_2s3z")
    assert (by_name.env.map, by_name.train.total_steps) == ("2s3z", 3_000_000)
    assert load_config(str(CONFIGS / "experiment" / "smax_2s3z.yaml")) == by_name
    check = load_config("smax_3m", ["seed=1"])
    assert (check.env.map, check.train.total_steps, check.seed) == ("3m", 1_000_000, 1)


def test_includes_resolve_from_configs_then_beside_the_file_and_own_keys_win(tmp_path):
    (tmp_path / "mine.yaml").write_text("train: {total_steps: 4e6, n_envs: 8}\n")
    (tmp_path / "run.yaml").write_text(
        "include: [env/smax_3s5z.yaml, algo/mat_dec.yaml, mine.yaml]\ntrain: {n_envs: 16}\n"
    )
    cfg = load_config(str(tmp_path / "run.yaml"))
    assert (cfg.env.map, cfg.algo.name) == ("3s5z", "mat_dec")
    assert (cfg.train.total_steps, cfg.train.n_envs) == (4_000_000, 16)


def test_loss_and_network_configs_carry_the_algo_settings():
    algo = load_config(overrides=["algo.clip=0.2", "algo.n_embd=32", "algo.n_head=2"]).algo
    loss, net = algo.loss_config(), algo.network_config()
    for sub in (loss, net):
        for f in dataclasses.fields(sub):
            assert getattr(sub, f.name) == getattr(algo, f.name), f.name
    assert (loss.clip, net.n_embd, net.n_head) == (0.2, 32, 2)


def test_list_fields_accept_yaml_lists_single_names_and_round_trip(tmp_path):
    from jax_mat.config.coercion import coerce

    key, typ = "env.disabled_joints", tuple[str, ...]
    assert coerce(key, ["bthigh", "ffoot"], typ) == ("bthigh", "ffoot")
    assert coerce(key, "bthigh", typ) == ("bthigh",)
    assert coerce(key, "bthigh, ffoot", typ) == ("bthigh", "ffoot")
    assert coerce(key, [], typ) == ()
    with pytest.raises(ValueError, match=r"env.disabled_joints must be a list of names"):
        coerce(key, 3, typ)
    with pytest.raises(ValueError, match=r"env.disabled_joints must be a list of names"):
        coerce(key, [["a"]], typ)


def test_options_of_another_environment_are_refused():
    with pytest.raises(ValueError, match=r"env.task does not apply to env.name=smax; it reads env.map"):
        load_config(overrides=["env.task=halfcheetah_6x1"])
    with pytest.raises(ValueError, match=r"env.disabled_joints does not apply to env.name=smax"):
        load_config(overrides=["env.disabled_joints=[bthigh]"])


def test_split_cli_args():
    split = config_lib.split_cli_args
    assert split([]) == (None, [])
    assert split(["smax_3m", "seed=1"]) == ("smax_3m", ["seed=1"])
    assert split(["seed=1", "algo=mat_dec"]) == (None, ["seed=1", "algo=mat_dec"])


# --------------------------------------------------------------------------- #
# Every SMAX map has a per-map file that loads                                  #
# --------------------------------------------------------------------------- #


def _map_files():
    from jax_mat.envs.registry import known_envs

    # jax_mat/configs/env/smax_multi.yaml selects an environment (env=smax_multi), not a map.
    return sorted(p.stem.removeprefix("smax_") for p in (CONFIGS / "env").glob("smax_*.yaml")
                  if p.stem not in known_envs())


def test_every_smax_map_has_a_per_map_file():
    from jax_mat.envs.registry import known_smax_maps

    assert set(_map_files()) == set(known_smax_maps())


@pytest.mark.parametrize("smax_map", _map_files())
def test_per_map_files_load_and_validate(smax_map):
    by_selector = load_config(overrides=[f"env=smax_{smax_map}"])
    by_map = load_config(overrides=[f"env.map={smax_map}"])
    assert by_selector == by_map
    assert by_map.env.map == smax_map and by_map.algo.clip == 0.05
    assert by_map.train.total_steps >= 2_000_000


# --------------------------------------------------------------------------- #
# Errors                                                                        #
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["algo.lrr=1e-3"], "unknown config key 'algo.lrr'; did you mean 'algo.lr'?"),
        (["alg.lr=1e-3"], "did you mean 'algo.lr'?"),
        (["train.num_mini_batch=2"], "did you mean 'algo.num_mini_batch'?"),
        (["algo.ppo_epochs=ten"], "algo.ppo_epochs must be an integer, got 'ten'"),
        (["algo.ppo_epochs=2.5"], "algo.ppo_epochs must be an integer, got 2.5"),
        (["algo.lr=fast"], "algo.lr must be a finite number, got 'fast'"),
        (["algo.use_huber_loss=maybe"], "algo.use_huber_loss must be true or false, got 'maybe'"),
        (["algo.lr=0"], "algo.lr must be > 0, got 0.0"),
        (["algo.clip=-0.1"], "algo.clip must be > 0"),
        (["algo.entropy_coef=-1e-3"], "algo.entropy_coef must be >= 0"),
        (["algo.gamma=0"], "algo.gamma must be in (0, 1]"),
        (["algo.gae_lambda=1.5"], "algo.gae_lambda must be in (0, 1]"),
        (["train.n_envs=0"], "train.n_envs must be >= 1"),
        (["train.episode_length=0"], "train.episode_length must be >= 1"),
        (["algo.num_mini_batch=0"], "algo.num_mini_batch must be >= 1"),
        (["train.eval_episodes=0"], "train.eval_episodes must be >= 1"),
        (["train.checkpoint_every=0"], "train.checkpoint_every must be >= 1"),
        (["algo.num_mini_batch=7"], "32 * 100 = 3200 is not divisible by algo.num_mini_batch = 7"),
        (["algo.n_head=3"], "algo.n_embd (64) must be divisible by algo.n_head (3)"),
        (["train.total_steps=1000"], "train.total_steps (1000) is less than one update"),
        (["algo=mapo"], "unknown algorithm 'mapo' (algo=mapo); did you mean 'mappo'? known: happo, mappo, marwkv,"),
        (["algo.name=ppo"], "unknown algorithm 'ppo' (algo.name); known: mat, mat_dec, marwkv, mat_rwkv, mappo, happo"),
        (["algo=marwkv", "algo.rwkv_version=7"], "algo.rwkv_version must be 4, 5 or 6, got 7"),
        (["algo=marwkv", "algo.wkv_impl=cuda"], "unknown WKV impl 'cuda'; allowed: 'scan', 'chunked', 'pallas', 'auto'"),
        (["algo=marwkv", "algo.wkv_impl=pallas"], "algo.wkv_impl=pallas needs a GPU (the default backend is cpu)"),
        (["algo.dec_actor=true"], "algo.name=mat needs algo.dec_actor=false"),
        (["env.name=starcraft"],
         "unknown environment 'starcraft' (env.name); known: smax, smax_multi, smac, isaac, mujoco"),
        (["env.map=4m"], "unknown SMAX map '4m'; known: 3m, 2s3z"),
        (["env.map=MMM2"], "Use env=smac"),
        (["env=smax_4m"], "unknown env config 'smax_4m' (env=smax_4m); did you mean"),
        (["algo.lr"], "malformed override 'algo.lr'; expected key=value"),
        (["=3"], "malformed override '=3'"),
        (["seed=-1"], "seed must be >= 0"),
    ],
)
def test_errors_say_what_is_wrong(overrides, message):
    with pytest.raises(ValueError) as err:
        load_config(overrides=overrides)
    assert message in str(err.value)


def test_unknown_experiment_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"config 'smax_3n' not found.*did you mean 'smax_3m'.*known experiments"):
        load_config("smax_3n")


def test_errors_in_files_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("algo: {lrr: 1e-3}\n")
    with pytest.raises(ValueError, match=r"unknown config key 'algo.lrr'; did you mean 'algo.lr'\? \(in .*bad.yaml\)"):
        load_config(str(path))
    path.write_text("train: {total_steps: lots}\n")
    with pytest.raises(ValueError, match=r"train.total_steps must be an integer, got 'lots' \(in .*bad.yaml\)"):
        load_config(str(path))
    path.write_text("algo: mat_dec\n")
    with pytest.raises(ValueError, match="'algo' is a section"):
        load_config(str(path))
    path.write_text("algo: [1\n")
    with pytest.raises(ValueError, match="cannot parse config file"):
        load_config(str(path))


def test_include_cycles_and_missing_includes_are_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("include: b.yaml\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        load_config(str(tmp_path / "a.yaml"))
    (tmp_path / "c.yaml").write_text("include: [nowhere.yaml]\n")
    with pytest.raises(ValueError, match="included file 'nowhere.yaml' not found"):
        load_config(str(tmp_path / "c.yaml"))


def test_yaml_numbers_without_a_dot_are_numbers(tmp_path):
    path = tmp_path / "steps.yaml"
    path.write_text("train: {total_steps: 3e6}\nalgo: {lr: 1e-3}\n")  # PyYAML reads both as strings
    cfg = load_config(str(path))
    assert (cfg.train.total_steps, cfg.algo.lr) == (3_000_000, 1e-3)


# --------------------------------------------------------------------------- #
# Saving and resuming                                                           #
# --------------------------------------------------------------------------- #


def test_save_and_reload_round_trip(tmp_path):
    cfg = load_config("smax_2s3z", ["algo=mat_dec", "algo.lr=3e-4", "seed=7", "name=run a"])
    path = tmp_path / "run" / "config.yaml"
    config_lib.save_config(cfg, path)
    assert config_lib.config_from_file(path) == cfg
    assert yaml.safe_load(path.read_text()) == config_lib.config_to_dict(cfg)
    assert os.listdir(path.parent) == ["config.yaml"]  # no temporary file left behind
    config_lib.save_config(dataclasses.replace(cfg, seed=8), path)  # overwrites in place
    assert config_lib.config_from_file(path).seed == 8


def test_resume_overrides_single_keys_only(tmp_path):
    path = tmp_path / "config.yaml"
    config_lib.save_config(load_config(), path)
    assert config_lib.config_from_file(path, ["train.total_steps=2e6"]).train.total_steps == 2_000_000
    with pytest.raises(ValueError, match="cannot apply algo=mat_dec"):
        config_lib.config_from_file(path, ["algo=mat_dec"])


def test_a_resume_that_changes_settings_rewrites_config_yaml_and_keeps_its_versions(tmp_path):
    path = tmp_path / "config.yaml"
    config_lib.save_config(load_config(), path, {"jax_mat": "0.0.9"})
    unchanged = path.read_text()
    assert config_lib.update_saved_config(config_lib.read_saved_config(path), path) == []
    assert path.read_text() == unchanged  # nothing changed: the file is left alone

    extended = config_lib.read_saved_config(path, ["train.total_steps=2e6", "train.devices=2"])
    changes = config_lib.update_saved_config(extended, path)
    assert changes == [f"train.total_steps: {load_config().train.total_steps} -> 2000000", "train.devices: 1 -> 2"]
    assert config_lib.read_saved_config(path) == extended
    assert yaml.safe_load(path.read_text())["versions"] == {"jax_mat": "0.0.9"}  # the versions it started with
    assert os.listdir(tmp_path) == ["config.yaml"]


def test_host_bridges_refuse_vmapped_seed_sweeps():
    with pytest.raises(ValueError, match=r"train.seeds=2 \(a vmapped seed sweep\) cannot run env.name=smac"):
        load_config("smac_standin_3m", ["train.seeds=2"])
    assert load_config("smac_standin_3m").train.seeds == 1


def test_reading_checks_the_schema_and_validation_checks_the_rest(tmp_path):
    overrides = ["train.devices=all", "train.n_envs=8", "env.map=3s5z", "seed=3"]
    assert config_lib.read_config(None, overrides) == load_config(overrides=overrides)
    # Reading builds the train section (what jax.distributed needs) without the environment checks, which
    # import JaxMARL, which starts JAX's backends; validate runs them.
    unchecked = config_lib.read_config(None, ["env.map=4m", "train.num_processes=2"])
    assert unchecked.train.num_processes == 2
    with pytest.raises(ValueError, match="unknown SMAX map '4m'"):
        config_lib.validate(unchecked)
    path = tmp_path / "config.yaml"
    config_lib.save_config(load_config(overrides=overrides), path)
    assert config_lib.read_saved_config(path, ["train.devices=2"]).train.devices == "2"
    with pytest.raises(ValueError, match="train.devices must be 'all' or a device count"):
        config_lib.read_config(None, ["train.devices=some"])


# --------------------------------------------------------------------------- #
# Fidelity with upstream MAT's scripts (store_false flags invert their names)    #
# --------------------------------------------------------------------------- #


def test_smax_and_smac_runs_train_every_agents_value_and_mask_the_policy():
    """train_smac.sh passes --use_value_active_masks (store_false: off) and not --use_policy_active_masks."""
    for overrides in ([], ["env.map=3s5z"], ["algo=marwkv"], ["algo=mappo"], ["algo=mat_dec"],
                      ["env=smax_multi"], ["env=smac", "env.map=3m", f"env.host_env={SMAC_STANDIN}"]):
        cfg = load_config(overrides=overrides)
        assert (cfg.algo.use_value_active_masks, cfg.algo.use_policy_active_masks) == (False, True), overrides
        assert cfg.algo.loss_config().use_value_active_masks is False


def test_mujoco_and_hands_runs_mask_nothing_and_hands_start_at_zero_std():
    """train_mujoco.sh and train_hands.sh pass both store_false mask flags; the hands runner calls zero_std()."""
    for name in ("mujoco_halfcheetah_6x1", "mujoco_halfcheetah_6x1_cpu"):
        cfg = load_config(name)
        assert (cfg.algo.use_value_active_masks, cfg.algo.use_policy_active_masks, cfg.algo.zero_std) == (
            False, False, False)
    cfg = load_config("isaac_standin_reach")
    assert (cfg.algo.use_value_active_masks, cfg.algo.use_policy_active_masks, cfg.algo.zero_std) == (
        False, False, True)
    assert cfg.algo.network_config().zero_std is True


def test_smax_defaults_are_upstreams_starcraft_observations_and_time_limits():
    cfg = load_config()
    assert (cfg.env.time_limit, cfg.env.obs_agent_id, cfg.env.obs_last_action) == ("smac", True, True)
    assert load_config(overrides=["env.time_limit=jaxmarl"]).env.time_limit == "jaxmarl"
    assert load_config(overrides=["env.time_limit=250"]).env.time_limit == "250"


def test_per_domain_settings_reach_the_starcraft_bridge():
    """jax_mat/configs/algo/smac/ holds the report's SMAC settings for smax, smax_multi and smac alike (MARWKV's lr)."""
    smac = ["env=smac", "env.map=3m", f"env.host_env={SMAC_STANDIN}"]
    for overrides in (["algo=marwkv"], ["env=smax_multi", "algo=marwkv"], [*smac, "algo=marwkv"]):
        assert load_config(overrides=overrides).algo.lr == 1e-3, overrides
    assert load_config(overrides=[*smac, "algo=mat"]).algo.lr == 5e-4
    assert load_config(overrides=["env=mujoco", "algo=marwkv"]).algo.lr == 5e-5


def test_time_limit_and_agent_feature_mistakes_are_config_errors():
    with pytest.raises(ValueError, match="env.time_limit must be a preset"):
        load_config(overrides=["env.time_limit=smacv3"])
    with pytest.raises(ValueError, match="env.time_limit does not apply to env.name=mujoco"):
        load_config(overrides=["env=mujoco", "env.time_limit=jaxmarl"])
    with pytest.raises(ValueError, match="env.obs_agent_id does not apply to env.name=mujoco"):
        load_config(overrides=["env=mujoco", "env.obs_agent_id=false"])
    with pytest.raises(ValueError, match="env.time_limit must be a preset"):
        load_config(overrides=["env=smax_multi", "env.time_limit=0"])


def test_a_run_saved_before_the_agent_features_resumes_as_it_ran(tmp_path):
    """A config.yaml without env.time_limit / obs_agent_id / obs_last_action ran with JaxMARL's 100 steps and
    bare SMAX observations; re-reading it keeps that run what it was."""
    path = tmp_path / "config.yaml"
    config_lib.save_config(load_config(), path, {"jax_mat": "0.1.0"})
    saved = yaml.safe_load(path.read_text())
    assert saved["versions"] == {"jax_mat": "0.1.0"}
    for key in ("time_limit", "obs_agent_id", "obs_last_action"):
        del saved["env"][key]
    path.write_text(yaml.safe_dump(saved))
    cfg = config_lib.config_from_file(path)
    assert (cfg.env.time_limit, cfg.env.obs_agent_id, cfg.env.obs_last_action) == ("jaxmarl", False, False)
    mujoco = load_config(overrides=["env=mujoco"])
    config_lib.save_config(mujoco, path)
    assert config_lib.config_from_file(path).env == mujoco.env  # MuJoCo reads none of them
