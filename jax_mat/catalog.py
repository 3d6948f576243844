"""What the installed package knows, one line each: ``python -m jax_mat.train --list``.

The algorithms (``algo=NAME``), environments (``env.name=NAME``), SMAX maps (``env.map=NAME``), MuJoCo tasks
(``env.task=NAME``), environment configs (``env=NAME``) and named experiments (``python -m jax_mat.train
NAME``). A shipped YAML file describes itself by its first comment line, an environment by its registry entry
(``envs.registry``), a SMAX map by its unit counts (``envs.smax.map_summary``), a MuJoCo task by its agents'
joints (``envs.mujoco_tasks``). Nothing is traced or compiled; listing the SMAX maps imports JaxMARL.
"""

from __future__ import annotations

from pathlib import Path

from jax_mat import config as config_lib

NO_DESCRIPTION = "(no description: the file starts without a comment)"


def first_comment(path: Path) -> str:
    """The text of a YAML file's first line when it is a comment (``# MAT: ...`` -> ``MAT: ...``)."""
    with open(path) as f:
        line = f.readline().strip()
    return line.lstrip("#").strip() if line.startswith("#") else NO_DESCRIPTION


def sections() -> list[tuple[str, list[tuple[str, str]]]]:
    """``[(heading, [(name, description), ...]), ...]`` in the order ``--list`` prints them."""
    from jax_mat.envs import mujoco_tasks, registry, smax

    def files(section: str) -> list[tuple[str, str]]:
        return [(name, first_comment(config_lib.shipped_file(section, name)))
                for name in config_lib.known_selectors(section)]

    def task_line(task: mujoco_tasks.MujocoTask) -> str:
        agents = " | ".join(",".join(joints) for joints in task.agents)
        return f"{len(task.agents)} agents on brax's {task.model_file}, joints: {agents}"

    return [
        ("algorithms (algo=NAME)", files("algo")),
        ("environments (env.name=NAME)", [(name, registry.env_description(name)) for name in registry.known_envs()]),
        ("SMAX maps (env.map=NAME)", [(name, smax.map_summary(name)) for name in smax.known_smax_maps()]),
        ("MuJoCo tasks (env=mujoco env.task=NAME)",
         [(name, task_line(mujoco_tasks.TASKS[name])) for name in mujoco_tasks.known_tasks()]),
        ("environment configs (env=NAME)", files("env")),
        ("experiments (python -m jax_mat.train NAME)", files("experiment")),
    ]


def listing() -> str:
    """Every section as a heading and one indented ``name  description`` line per entry."""
    lines = []
    for heading, entries in sections():
        width = max(len(name) for name, _ in entries)
        lines.append(f"{heading}:")
        lines.extend(f"  {name:<{width}}  {description}" for name, description in entries)
    return "\n".join(lines)
