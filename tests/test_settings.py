"""Settings: where state and caches live."""
from __future__ import annotations

from carbonsched.providers.grid import build_forecast_source
from carbonsched.settings import resolve_settings


def _env(tmp_path, **extra):
    return {"XDG_CACHE_HOME": str(tmp_path / "xcache"), "XDG_DATA_HOME": str(tmp_path / "xdata"),
            "XDG_CONFIG_HOME": str(tmp_path / "xconfig"), **extra}


def test_cache_goes_to_xdg_cache_home_when_no_home_is_set(tmp_path):
    s = resolve_settings(env=_env(tmp_path))
    assert s.home == tmp_path / "xdata" / "carbonsched"
    assert s.cache_dir == tmp_path / "xcache" / "carbonsched"
    src = build_forecast_source(s, name="uk-carbon-intensity", env={})
    assert src.cache.root == tmp_path / "xcache" / "carbonsched" / "grid"


def test_a_chosen_home_keeps_its_cache_beside_the_state(tmp_path):
    s = resolve_settings(env=_env(tmp_path, CARBONSCHED_HOME=str(tmp_path / "home")))
    assert s.cache_dir == tmp_path / "home" / "cache"
    config = tmp_path / "xconfig" / "carbonsched" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'home = "{tmp_path / "fromfile"}"\n')
    assert resolve_settings(env=_env(tmp_path)).cache_dir == tmp_path / "fromfile" / "cache"
    assert resolve_settings({"home": str(tmp_path / "arg")}, env=_env(tmp_path)).cache_dir == tmp_path / "arg" / "cache"
