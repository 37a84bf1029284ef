"""Puts the user's config dirs (``--config-dir``) before the packaged config dir.

``fewshot_eval.app.run_hydra`` takes ``--config-dir`` out of the command line (Hydra would add it
after the packaged dir, and after this plugin has run) and passes the dirs in
``$FEWSHOT_EVAL_CONFIG_DIRS``; see ``fewshot_eval.searchpath``.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class UserConfigDirsFirst(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from fewshot_eval.searchpath import env_dirs, prepend_user_dirs

        prepend_user_dirs(search_path, env_dirs())
