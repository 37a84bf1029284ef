"""Hydra's ``run_job`` (hydra.core.utils, Hydra 1.3) for jobs run in this process, without its repeated work.

What a job, its callbacks and the launcher's caller see is ``run_job``'s: ``HydraConfig.get()`` is the
job's hydra node (``runtime.output_dir`` set) while the job and its callbacks run, then the previous one
again; the job dir ``hydra.sweep.dir/hydra.sweep.subdir`` is created; ``hydra.job.chdir`` and
``hydra.job.env_set`` apply around the task function; ``.hydra/config.yaml``, ``hydra.yaml`` and
``overrides.yaml`` have the same bytes; the job logs to its own file (``hydra.job_logging``);
``on_job_start(config=, task_function=)`` and ``on_job_end(config=, job_return=)`` get the same
arguments; the ``JobReturn`` has the same fields, ``cfg`` (the config the task function got, without
``hydra``) and ``hydra_cfg`` (``{hydra: ...}``) being the job's own copies, as deep copies would be.

What it saves (CPU time per job beyond the task function, this project's config, 2 cores: ``run_job``
~30 ms, this ~8 ms): ``HydraConfig`` holds the job's hydra node
itself instead of two masked deep copies (it is read-only while set, as there); the two copies the
``JobReturn`` keeps are pickles (the same nodes, flags and types once unpickled): the task function's
``cfg`` is unpickled at once, ``hydra_cfg`` only if read, and once the job has ended both are held as
bytes until read (:class:`PackedJobReturn`: a sweep keeps a few KB per job, not two config trees the
garbage collector walks again and again); the YAML files are rendered by :mod:`fewshot_eval.store.config_yaml` (the same dumper, each
top-level entry once while it repeats); logging is configured in full by Hydra's ``configure_log`` for
the first job and whenever the configuration or what it installed changed, otherwise only the file
handlers' files are swapped for the job's (what ``configure_log`` would have installed anew).
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

from hydra import version
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, _flush_loggers, configure_log, env_override
from omegaconf import DictConfig, OmegaConf, flag_override, open_dict, read_write

from fewshot_eval.store.config_yaml import render


def task_copy(config: DictConfig) -> DictConfig:
    """``run_job``'s ``task_cfg``: a copy of ``config`` less its ``hydra`` node (flags and types kept).

    Pickled with its content less ``hydra`` for that moment (``_content``: the dict OmegaConf's own
    ``__deepcopy__`` and ``__getstate__`` copy), so the hydra node is neither copied nor deleted after."""
    content = config.__dict__["_content"]
    config.__dict__["_content"] = {k: v for k, v in content.items() if k != "hydra"}
    try:
        data = pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)
    finally:
        config.__dict__["_content"] = content
    return pickle.loads(data)  # type: ignore[no-any-return]


@contextmanager
def parse_trees_kept(maxsize: int = 256) -> Iterator[None]:
    """OmegaConf parses an interpolation string anew (ANTLR) each time it resolves it: 0.3-0.7 ms for each
    of the strings every job resolves (its dir, ``hydra.sweep.subdir``, its log file's name). Meanwhile the
    parse tree of each string is kept and reused: a tree depends on the string only and resolving only
    reads it. (omegaconf's ``base.parse`` is what its resolution calls; omegaconf is pinned < 2.4.)"""
    import omegaconf.base as base

    original = getattr(base, "parse", None)
    if original is None or hasattr(original, "cache_info"):  # another omegaconf, or kept already (nested)
        yield
        return
    base.parse = functools.lru_cache(maxsize=maxsize)(original)
    try:
        yield
    finally:
        base.parse = original


def hydra_wrapper(config: DictConfig) -> DictConfig:
    """What ``HydraConfig.set_config`` holds -- ``{hydra: <config.hydra>}`` with the node's parent
    ``config`` (interpolations into the job's config resolve) -- without copying the node."""
    node = config._get_node("hydra")
    OmegaConf.set_readonly(node, True)  # type: ignore[arg-type]
    wrapper = DictConfig({})
    with flag_override(wrapper, "no_deepcopy_set_nodes", True):
        wrapper["hydra"] = node
    node._set_parent(config)  # type: ignore[union-attr]
    return wrapper


def hydra_copy(wrapper: DictConfig, config: DictConfig) -> "Pickled":
    """``run_job``'s ``hydra_cfg``, pickled: a deep copy of ``HydraConfig``'s ``{hydra: ...}`` once unpickled
    (its node's parent is the copy)."""
    node = wrapper._get_node("hydra")
    node._set_parent(wrapper)  # type: ignore[union-attr]
    try:
        return Pickled(pickle.dumps(wrapper, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        node._set_parent(config)  # type: ignore[union-attr]


class Pickled:
    """A config kept as its pickle until it is read."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


def _unpickled_on_read(name: str) -> property:
    attr = f"_{name}"

    def get(self: JobReturn) -> Any:
        value = self.__dict__.get(attr)
        if type(value) is Pickled:
            value = self.__dict__[attr] = pickle.loads(value.data)
        return value

    def set(self: JobReturn, value: Any) -> None:
        self.__dict__[attr] = value

    return property(get, set)


class PackedJobReturn(JobReturn):
    """A ``JobReturn`` whose ``cfg`` and ``hydra_cfg`` may be held pickled (:class:`Pickled`, :meth:`pack`) and
    are unpickled when first read: a sweep's returns then hold a few KB of bytes per job instead of two config
    trees (~10,000 Python objects), which also the garbage collector's passes no longer walk."""

    cfg = _unpickled_on_read("cfg")
    hydra_cfg = _unpickled_on_read("hydra_cfg")

    def pack(self) -> None:
        """Hold ``cfg`` and ``hydra_cfg`` pickled until read again (as they are now)."""
        for attr in ("_cfg", "_hydra_cfg"):
            value = self.__dict__.get(attr)
            if isinstance(value, DictConfig):
                self.__dict__[attr] = Pickled(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def _write(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:  # as Hydra's _save_config (not an atomic write either)
        f.write(text)


class JobLogging:
    """``configure_log(hydra.job_logging, hydra.verbose)`` per job, in full only when needed.

    After a full configuration, a job whose logging configuration is the last one's but for the
    resolved file names of ``logging.FileHandler`` handlers gets those handlers pointed at its files --
    when logging is still as that configuration left it: the same loggers exist, the configured (and
    verbose) ones have the same level, handlers, propagation and state, and no handler was created since.
    That is what a full configuration would leave, without rebuilding formatters, handlers and loggers.
    (The configuration is compared unresolved, plus the resolved values of its interpolations: what
    ``OmegaConf.to_container(resolve=True)`` would give, without resolving the rest again.)"""

    def __init__(self) -> None:
        self._raw: Any = None  # the last full configuration's job_logging, unresolved (None: none to compare with)
        self._verbose: Any = None
        self._interpolated: list[tuple[Any, ...]] = []  # paths of its interpolated values
        self._resolved: list[Any] = []  # their values for the last job
        self._state: Any = None

    def _loggers(self) -> list[logging.Logger]:
        names = [*(self._raw.get("loggers") or {}), *(self._verbose if isinstance(self._verbose, list) else [self._verbose])]
        return [logging.getLogger(), *(logging.getLogger(n) for n in names if isinstance(n, str))]

    def _snapshot(self) -> Any:
        handlers = tuple(id(r()) for r in logging._handlerList)  # type: ignore[attr-defined]  # as Hydra's _flush_loggers
        loggers = [(lg.level, tuple(lg.handlers), lg.propagate, lg.disabled) for lg in self._loggers()]
        return handlers, len(logging.root.manager.loggerDict), loggers

    def configure(self, config: DictConfig) -> None:
        log_cfg, verbose = config.hydra.job_logging, config.hydra.verbose
        raw = OmegaConf.to_container(log_cfg) if log_cfg is not None else None
        verbose_key = OmegaConf.to_container(verbose) if OmegaConf.is_config(verbose) else verbose
        files = self._swappable(log_cfg, raw, verbose_key)
        if files is None:
            configure_log(log_cfg, verbose)
            full = isinstance(raw, dict) and raw.get("root") is not None and not raw.get("incremental")
            self._raw, self._verbose = (raw, verbose_key) if full else (None, None)
            if full:
                self._interpolated = list(_interpolations(raw))
                self._resolved = [_value_at(log_cfg, p) for p in self._interpolated]
                self._state = self._snapshot()
            return
        installed = {h.get_name(): h for lg in self._loggers() for h in lg.handlers}
        for name, filename in files.items():
            h = installed[name]
            assert isinstance(h, logging.FileHandler)
            h.baseFilename = os.path.abspath(filename)
            old = h.setStream(None if h.delay else h._open())  # flushes the old stream
            if old is not None:
                old.close()

    def _swappable(self, log_cfg: Any, raw: Any, verbose: Any) -> Optional[dict[str, str]]:
        """The file handlers to point at other files (name -> file), or None: configure in full."""
        if self._raw is None or raw != self._raw or verbose != self._verbose or self._snapshot() != self._state:
            return None
        resolved = [_value_at(log_cfg, p) for p in self._interpolated]
        if any(OmegaConf.is_config(v) for v in resolved):
            return None
        installed = {h.get_name(): h for lg in self._loggers() for h in lg.handlers}
        files: dict[str, str] = {}
        for path, old, new in zip(self._interpolated, self._resolved, resolved):
            if old == new:
                continue
            if len(path) != 3 or path[0] != "handlers" or path[2] != "filename" or raw["handlers"][path[1]].get("class") != "logging.FileHandler":
                return None
            if type(installed.get(path[1])) is not logging.FileHandler:  # exactly what dictConfig built for it
                return None
            files[path[1]] = str(new)
        self._resolved = resolved
        return files


def _interpolations(data: Any, path: tuple[Any, ...] = ()) -> Any:
    """The paths of the values with an interpolation in plain (unresolved) config data."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for k, v in items:
        if isinstance(v, str) and "${" in v:
            yield (*path, k)
        else:
            yield from _interpolations(v, (*path, k))


def _value_at(cfg: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        cfg = cfg[k]
    return cfg


class InProcessJobs:
    """Runs a sweep's jobs in this process, one at a time (see the module's docstring)."""

    def __init__(self, hydra_context: Any, task_function: Any) -> None:
        self.callbacks = hydra_context.callbacks
        self.task_function = task_function
        self.logging = JobLogging()

    def run(self, config: DictConfig, job_dir_key: str = "hydra.sweep.dir", job_subdir_key: str = "hydra.sweep.subdir") -> JobReturn:
        """Hydra's ``run_job(config=config, job_dir_key=..., job_subdir_key=...)``."""
        hc = HydraConfig.instance()
        old_cwd = os.getcwd()
        orig_hydra_cfg = hc.cfg
        wrapper = hydra_wrapper(config)
        hc.cfg = wrapper  # type: ignore[assignment]
        output_dir = os.path.join(str(OmegaConf.select(config, job_dir_key)), str(OmegaConf.select(config, job_subdir_key)))
        with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
            config.hydra.runtime.output_dir = os.path.abspath(output_dir)
        _chdir = None
        try:
            ret = PackedJobReturn()
            task_cfg = task_copy(config)
            ret.cfg = task_cfg
            ret.hydra_cfg = hydra_copy(wrapper, config)  # unpickled if read (a callback)
            hydra_cfg = wrapper  # its values: the same as the copy's
            overrides = OmegaConf.to_container(config.hydra.overrides.task)
            assert isinstance(overrides, list)
            ret.overrides = overrides
            Path(output_dir).mkdir(parents=True, exist_ok=True)
            _chdir = hydra_cfg.hydra.job.chdir
            if _chdir is None and version.base_at_least("1.2"):
                _chdir = False
            if _chdir is None:  # version_base < 1.2: as Hydra's run_job, a warning and the job's dir
                from hydra.core import utils as hydra_utils

                hydra_utils.deprecation_warning(
                    message="Future Hydra versions will no longer change working directory at job runtime by default.\n"
                    "See https://hydra.cc/docs/1.2/upgrades/1.1_to_1.2/changes_to_job_working_dir/ for more information.",
                    stacklevel=2,
                )
                _chdir = True
            if _chdir:
                os.chdir(output_dir)
                ret.working_dir = output_dir
            else:
                ret.working_dir = os.getcwd()
            self.logging.configure(config)
            if config.hydra.output_subdir is not None:
                hydra_output = Path(config.hydra.runtime.output_dir) / Path(config.hydra.output_subdir)
                hydra_output.mkdir(parents=True, exist_ok=True)
                _write(hydra_output / "config.yaml", render(OmegaConf.to_container(task_cfg, enum_to_str=True)))
                _write(hydra_output / "hydra.yaml", render(OmegaConf.to_container(hydra_cfg, enum_to_str=True)))
                _write(hydra_output / "overrides.yaml", render(overrides))
            with env_override(hydra_cfg.hydra.job.env_set):
                self.callbacks.on_job_start(config=config, task_function=self.task_function)
                try:
                    ret.return_value = self.task_function(task_cfg)
                    ret.status = JobStatus.COMPLETED
                except Exception as e:
                    ret.return_value = e
                    ret.status = JobStatus.FAILED
            ret.task_name = JobRuntime.instance().get("name")
            _flush_loggers()
            self.callbacks.on_job_end(config=config, job_return=ret)
            ret.pack()  # what the sweep keeps of each job: bytes
            return ret
        finally:
            hc.cfg = orig_hydra_cfg
            if _chdir:
                os.chdir(old_cwd)
