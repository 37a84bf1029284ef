"""Site profiles: what one cluster needs, in ``conf/site/<name>.yaml`` (or ``<your config dir>/site/``).

    fewshot-eval -m models=pythia tasks=superglue hydra/launcher=submitit_slurm site=mycluster
    fewshot-eval -m models=pythia tasks=superglue hydra/launcher=submitit_slurm    # site found by ClusterName

A profile holds the cluster's partition, account, qos, constraint, how it spells a GPU request
(``gpu_gres``), environment variables (``HF_HOME`` ...), setup lines, a command wrapper (a container)
and the Python to run; schema and validation: :class:`fewshot_eval.settings.SiteProfile`.

Which profile: ``site=<name>``; else, with the SLURM launcher, the one whose ``clusters`` (or file
name) holds the ClusterName of ``scontrol show config`` (asked once, with the short probe timeout);
``site=none`` turns detection off. Precedence per option, lowest first: the site, the model
setting's ``slurm:``, ``hydra.launcher.<name>`` (:func:`fewshot_eval.launch.slurm.pools.executor_parameters`,
which also turns ``env``, ``setup``, ``wrapper`` and ``python`` into the job script's lines and command).
Its ``env`` is exported first in every job script and set in the sweep's own process while it plans,
prefetches and runs local jobs, so they all use the same caches.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from fewshot_eval.config import ConfigError

OFF = "none"  # site=none: no profile, no detection


@dataclass
class Site:
    """A resolved profile: its name, how it was chosen, and its validated options."""

    name: str
    how: str  # "site=<name>" or "detected: ClusterName=<x>"
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        shown = [f"{k}={self.options[k]}" for k in ("partition", "account", "qos", "constraint", "gpu_gres", "wrapper") if self.options.get(k)]
        if self.options.get("env"):
            shown.append("env " + ",".join(self.options["env"]))
        if self.options.get("setup"):
            shown.append(f"{len(self.options['setup'])} setup line{'s' if len(self.options['setup']) != 1 else ''}")
        return f"site profile '{self.name}' ({self.how}){': ' + ', '.join(shown) if shown else ''}"


def profiles(search: Sequence[Path]) -> dict[str, Path]:
    """name -> file of every site profile in the config search path (the first dir holding a name wins)."""
    found: dict[str, Path] = {}
    for d in search:
        for f in sorted((Path(d) / "site").glob("*.yaml")):
            if not f.stem.startswith("_"):
                found.setdefault(f.stem, f)
    return found


def load_profile(name: str, path: Path, resolve: bool = True) -> dict[str, Any]:
    """A profile file, interpolations (``${oc.env:USER}``) resolved and validated (``resolve=False``:
    the file as it is, unchecked)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from fewshot_eval.settings import site_profile

    try:
        node = OmegaConf.to_container(OmegaConf.load(path), resolve=resolve) or {}
    except (OmegaConfBaseException, OSError, ValueError) as e:
        raise ConfigError(f"site/{name}.yaml ({path}): cannot read it: {str(e).splitlines()[0]}") from None
    if not isinstance(node, dict):
        raise ConfigError(f"site/{name}.yaml ({path}): a site profile is a mapping of options, got {type(node).__name__}.")
    return site_profile(node, name) if resolve else node


def detect(cluster: Optional[str], search: Sequence[Path]) -> Optional[Site]:
    """The profile made for SLURM cluster ``cluster``: its name is in the profile's ``clusters``, or is
    the profile's file name. Two profiles claiming one cluster is an error naming both."""
    if not cluster:
        return None
    hits: list[tuple[str, Path]] = []
    for name, path in profiles(search).items():  # only the profile that claims the cluster is validated
        clusters = load_profile(name, path, resolve=False).get("clusters")
        if name != OFF and (name == cluster or (isinstance(clusters, list) and cluster in clusters)):
            hits.append((name, path))
    if len(hits) > 1:
        raise ConfigError(f"site profiles {', '.join(n for n, _ in hits)} all claim SLURM cluster '{cluster}' (ClusterName): "
                          f"keep it in one profile's 'clusters', or pick one with site=<name>.")
    if not hits:
        return None
    name, path = hits[0]
    return Site(name, f"detected: ClusterName={cluster}", load_profile(name, path))


def submits_to_slurm(cfg: Any) -> bool:
    """The sweep's launcher is fewshot-eval's SLURM launcher (``hydra/launcher=submitit_slurm`` / ``fewshot_slurm``)."""
    launcher = cfg.hydra.get("launcher") or {}
    return str(launcher.get("_target_", "")).endswith(".SlurmPoolLauncher")


def resolve_site(cfg: Any, search: Sequence[Path]) -> Optional[Site]:
    """The site profile of a sweep: the one selected (``site=<name>``: ``cfg.site``, composed by Hydra),
    else -- with the SLURM launcher -- the one detected from the cluster's name."""
    from omegaconf import OmegaConf

    from fewshot_eval.settings import site_profile

    name = cfg.hydra.runtime.choices.get("site")
    if name == OFF:
        return None
    if name:
        node = cfg.get("site")
        node = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
        return Site(str(name), f"site={name}", site_profile(node or {}, str(name)))
    if not submits_to_slurm(cfg):
        return None
    from fewshot_eval.launch.slurm.pools import cluster_name

    return detect(cluster_name(), search)


@contextlib.contextmanager
def site_env(site: Optional[Site]) -> Iterator[None]:
    """The site's ``env`` set in this process (planning, prefetch and local jobs see the caches the
    SLURM jobs will use), put back as it was afterwards."""
    env = dict(site.options.get("env") or {}) if site else {}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
