"""The Tech Adapter registry (``provisioner.adapters.registry``): parsing, per-environment URLs,
environment variables, and refusal of unusable configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.adapters.registry import AdapterRegistry
from provisioner.engine.ports import AdapterEndpoint
from provisioner.errors import ConfigurationError

DEFAULT_TIMEOUT = 1234.0


def load(text: str, **environ: str) -> AdapterRegistry:
    return AdapterRegistry.from_text(text, default_timeout_seconds=DEFAULT_TIMEOUT, environ=environ)


def one(url: str, extra: str = "") -> str:
    """A registry of one adapter, template ``urn:t:0``."""
    return f"techAdapters:\n  - infrastructureTemplateId: urn:t:0\n    url: '{url}'\n{extra}"


# --- parsing -----------------------------------------------------------------------------------


def test_a_full_entry_resolves_to_an_endpoint() -> None:
    """Every field of an entry reaches the endpoint; a trailing '/' is dropped from the URL."""
    registry = load(
        """
techAdapters:
  - infrastructureTemplateId: urn:dmb:itm:snowflake:0
    url: http://snowflake-ta:8093/
    timeoutSeconds: 60
    maxConcurrency: 8
    headers: {Authorization: Bearer abc}
    asyncValidation: true
"""
    )

    assert registry.resolve("urn:dmb:itm:snowflake:0", "development") == AdapterEndpoint(
        infrastructure_template_id="urn:dmb:itm:snowflake:0",
        url="http://snowflake-ta:8093",
        timeout_seconds=60.0,
        max_concurrency=8,
        headers={"Authorization": "Bearer abc"},
        async_validation=True,
    )


def test_the_optional_fields_have_defaults() -> None:
    """Defaults: the registry's timeout, no concurrency cap, no headers, sync validation."""
    endpoint = load(one("http://a:1")).resolve("urn:t:0", "development")

    assert endpoint == AdapterEndpoint(
        infrastructure_template_id="urn:t:0",
        url="http://a:1",
        timeout_seconds=DEFAULT_TIMEOUT,
        max_concurrency=None,
        headers={},
        async_validation=False,
    )


def test_template_ids_lists_every_registered_template_in_order() -> None:
    """``template_ids`` is the registered ids, in file order."""
    registry = load(
        "techAdapters:\n"
        "  - {infrastructureTemplateId: urn:b, url: 'http://b'}\n"
        "  - {infrastructureTemplateId: urn:a, url: 'http://a'}\n"
    )

    assert registry.template_ids == ["urn:b", "urn:a"]


def test_an_unregistered_template_resolves_to_none() -> None:
    """``resolve`` answers None for a template nobody serves."""
    assert load(one("http://a")).resolve("urn:other", "development") is None


@pytest.mark.parametrize("text", ["", "techAdapters: []\n", "# nothing\n"])
def test_an_empty_registry_has_no_templates(text: str) -> None:
    """An empty file (or list) is a valid registry with nothing registered."""
    assert load(text).template_ids == []


def test_the_empty_registry_constructor_resolves_nothing() -> None:
    """``AdapterRegistry.empty()`` has no templates."""
    registry = AdapterRegistry.empty()

    assert registry.template_ids == []
    assert registry.resolve("urn:t:0", "production") is None


def test_a_registry_is_read_from_a_file(tmp_path: Path) -> None:
    """``from_file`` reads the YAML file and resolves its entries."""
    path = tmp_path / "registry.yaml"
    path.write_text(one("https://a.example:8443"), encoding="utf-8")

    registry = AdapterRegistry.from_file(path, default_timeout_seconds=5.0, environ={})

    endpoint = registry.resolve("urn:t:0", "x")
    assert endpoint is not None
    assert (endpoint.url, endpoint.timeout_seconds) == ("https://a.example:8443", 5.0)


def test_a_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    """An unreadable registry file names the path."""
    path = tmp_path / "absent.yaml"

    with pytest.raises(ConfigurationError, match="cannot read the adapter registry") as caught:
        AdapterRegistry.from_file(path, default_timeout_seconds=5.0)

    assert str(path) in caught.value.message


# --- environments ------------------------------------------------------------------------------


def test_an_environment_url_overrides_the_default_url() -> None:
    """``environments.production`` is used in production; other environments use ``url``."""
    registry = load(one("http://dev:1", "    environments: {production: 'https://prod:2/'}\n"))

    production = registry.resolve("urn:t:0", "production")
    development = registry.resolve("urn:t:0", "development")

    assert production is not None
    assert development is not None
    assert production.url == "https://prod:2"
    assert development.url == "http://dev:1"


def test_an_entry_with_only_environment_urls_serves_only_those_environments() -> None:
    """Without ``url``, an environment not listed has no adapter."""
    registry = load(
        "techAdapters:\n"
        "  - infrastructureTemplateId: urn:t:0\n"
        "    environments: {production: 'http://prod'}\n"
    )

    assert registry.resolve("urn:t:0", "development") is None
    endpoint = registry.resolve("urn:t:0", "production")
    assert endpoint is not None
    assert endpoint.url == "http://prod"


def test_an_entry_needs_a_url_somewhere() -> None:
    """No ``url`` and no ``environments`` is refused."""
    with pytest.raises(ConfigurationError, match="needs a url"):
        load("techAdapters:\n  - infrastructureTemplateId: urn:t:0\n")


# --- environment variables ---------------------------------------------------------------------


def test_variables_are_replaced_in_urls_and_header_values() -> None:
    """``${VAR}`` anywhere in a value, several per value, is taken from the environment."""
    registry = load(
        one("http://${HOST}:${PORT}", "    headers: {Authorization: 'Bearer ${TOKEN}'}\n"),
        HOST="ta",
        PORT="8093",
        TOKEN="s3cret",
    )

    endpoint = registry.resolve("urn:t:0", "development")
    assert endpoint is not None
    assert endpoint.url == "http://ta:8093"
    assert endpoint.headers == {"Authorization": "Bearer s3cret"}


def test_a_default_is_used_when_the_variable_is_unset() -> None:
    """``${VAR:-default}`` falls back to its default."""
    endpoint = load(one("${MOCK_ADAPTER_URL:-http://localhost:8093}")).resolve("urn:t:0", "x")

    assert endpoint is not None
    assert endpoint.url == "http://localhost:8093"


def test_a_set_variable_wins_over_its_default() -> None:
    """``${VAR:-default}`` takes the variable when it is set."""
    endpoint = load(
        one("${MOCK_ADAPTER_URL:-http://localhost:8093}"), MOCK_ADAPTER_URL="http://mock:9"
    ).resolve("urn:t:0", "x")

    assert endpoint is not None
    assert endpoint.url == "http://mock:9"


def test_an_empty_default_is_allowed() -> None:
    """``${VAR:-}`` is the empty string when the variable is unset."""
    endpoint = load(one("http://a", "    headers: {X-Extra: 'v${SUFFIX:-}'}\n")).resolve(
        "urn:t:0", "x"
    )

    assert endpoint is not None
    assert endpoint.headers == {"X-Extra": "v"}


def test_an_unset_variable_without_default_is_a_configuration_error() -> None:
    """The unset variables of a value are named once each, in sorted order."""
    text = one("http://${HOST}/${TOKEN}${HOST}")

    with pytest.raises(ConfigurationError) as caught:
        load(text)

    assert caught.value.message == (
        "the adapter registry refers to unset environment variables: HOST, TOKEN"
    )


def test_an_unset_variable_in_a_header_is_a_configuration_error() -> None:
    """Header values are checked like URLs."""
    with pytest.raises(ConfigurationError, match=r"unset environment variables: TOKEN$"):
        load(one("http://a", "    headers: {Authorization: 'Bearer ${TOKEN}'}\n"))


def test_substituted_values_are_not_expanded_again() -> None:
    """A variable whose value looks like ``${OTHER}`` is used literally."""
    endpoint = load(one("http://a", "    headers: {X: '${A}'}\n"), A="${B}").resolve("urn:t:0", "x")

    assert endpoint is not None
    assert endpoint.headers == {"X": "${B}"}


def test_the_registry_reads_the_process_environment_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without ``environ``, ``os.environ`` supplies the variables."""
    monkeypatch.setenv("PROVISIONER_TEST_ADAPTER_HOST", "from-env")

    registry = AdapterRegistry.from_text(
        one("http://${PROVISIONER_TEST_ADAPTER_HOST}"), default_timeout_seconds=1.0
    )

    endpoint = registry.resolve("urn:t:0", "x")
    assert endpoint is not None
    assert endpoint.url == "http://from-env"


# --- refusals ----------------------------------------------------------------------------------


def test_a_template_registered_twice_is_refused() -> None:
    """Two entries for one ``infrastructureTemplateId`` are a configuration error."""
    with pytest.raises(ConfigurationError, match="'urn:t:0' is registered twice"):
        load(
            "techAdapters:\n"
            "  - {infrastructureTemplateId: urn:t:0, url: 'http://a'}\n"
            "  - {infrastructureTemplateId: urn:t:0, url: 'http://b'}\n"
        )


@pytest.mark.parametrize(
    "url",
    ["ftp://a", "http://", "https:///path", "nope", "", "a.example:80", "//a.example"],
)
def test_a_url_that_is_not_http_is_refused(url: str) -> None:
    """Only absolute http(s) URLs with a host are accepted."""
    with pytest.raises(ConfigurationError, match="is not an http\\(s\\) URL"):
        load(one(url))


def test_an_environment_url_that_is_not_http_is_refused() -> None:
    """Environment URLs are checked like the default one."""
    with pytest.raises(ConfigurationError, match="'nope' is not an http\\(s\\) URL"):
        load(one("http://a", "    environments: {production: nope}\n"))


@pytest.mark.parametrize(
    "url",
    ["http://host:notaport", "http://exa mple.com", "http://[::1"],
)
def test_a_url_httpx_cannot_use_is_refused(url: str) -> None:
    """A bad port, a space or an unclosed IPv6 bracket is refused when the registry loads."""
    with pytest.raises(ConfigurationError):
        load(one(url))


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("    colour: red\n", "colour"),
        ("    timeout: 5\n", "timeout"),
    ],
)
def test_an_unknown_entry_key_is_refused(extra: str, field: str) -> None:
    """A misspelt key is an error, not silently ignored."""
    with pytest.raises(ConfigurationError, match="Extra inputs are not permitted") as caught:
        load(one("http://a", extra))

    assert field in caught.value.message


def test_an_unknown_top_level_key_is_refused() -> None:
    """``adapters:`` instead of ``techAdapters:`` is an error."""
    with pytest.raises(ConfigurationError, match="adapters"):
        load("adapters: []\n")


@pytest.mark.parametrize(
    "extra",
    [
        "    timeoutSeconds: 0\n",
        "    timeoutSeconds: -1\n",
        "    maxConcurrency: 0\n",
        "    headers: {X: 1}\n",
    ],
)
def test_out_of_range_or_mistyped_values_are_refused(extra: str) -> None:
    """Non-positive timeouts and concurrency, non-string header values are refused."""
    with pytest.raises(ConfigurationError, match="invalid adapter registry"):
        load(one("http://a", extra))


def test_an_empty_template_id_is_refused() -> None:
    """``infrastructureTemplateId: ''`` is refused."""
    with pytest.raises(ConfigurationError, match="infrastructureTemplateId"):
        load("techAdapters:\n  - {infrastructureTemplateId: '', url: 'http://a'}\n")


def test_malformed_yaml_is_a_configuration_error_naming_the_source() -> None:
    """A YAML syntax error says which file and that it is malformed."""
    with pytest.raises(ConfigurationError, match=r"^registry\.yaml: malformed YAML"):
        AdapterRegistry.from_text(
            "techAdapters: [\n", default_timeout_seconds=1.0, environ={}, source="registry.yaml"
        )


def test_a_registry_that_is_not_a_mapping_is_refused() -> None:
    """A top-level list is an invalid registry."""
    with pytest.raises(ConfigurationError, match="invalid adapter registry"):
        load("- urn:t:0\n")


# --- Market Planes -----------------------------------------------------------------------------


def test_market_planes_are_read_with_their_secret_from_the_environment() -> None:
    """``marketplaces`` entries become endpoints; ``${VAR}`` fills the secret and headers; the
    secret is not in the endpoint's repr (it is never logged)."""
    registry = load(
        one("http://a")
        + "marketplaces:\n"
        + "  - name: catalog\n    url: https://catalog:8443/events/\n"
        + "    headers: {Authorization: 'Bearer ${CATALOG_TOKEN}'}\n"
        + "    secret: ${CATALOG_SECRET}\n"
        + "  - {name: search, url: 'http://search/hook'}\n",
        CATALOG_TOKEN="tok",
        CATALOG_SECRET="s3cret",
    )
    catalog, search = registry.marketplaces
    assert (catalog.name, catalog.url, catalog.secret) == (
        "catalog",
        "https://catalog:8443/events",
        "s3cret",
    )
    assert catalog.headers == {"Authorization": "Bearer tok"}
    assert "s3cret" not in repr(catalog)
    assert "tok" not in repr(catalog)
    assert (search.name, search.url, search.secret, dict(search.headers)) == (
        "search",
        "http://search/hook",
        None,
        {},
    )


def test_without_market_planes_there_are_none() -> None:
    assert load(one("http://a")).marketplaces == ()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("  - {name: a, url: 'http://a', colour: red}\n", "Extra inputs are not permitted"),
        ("  - {name: a, url: 'ftp://a'}\n", "is not an http\\(s\\) URL"),
        ("  - {name: a}\n", "marketplaces.0.url: Field required"),
        ("  - {name: '', url: 'http://a'}\n", "marketplaces.0.name"),
        ("  - {name: 'a b', url: 'http://a'}\n", "marketplaces.0.name"),
        ("  - {name: a, url: 'http://a', secret: ''}\n", "marketplaces.0.secret"),
        ("  - {name: a, url: 'http://a'}\n  - {name: a, url: 'http://b'}\n", "distinct: a$"),
    ],
)
def test_unusable_market_planes_are_refused(entries: str, message: str) -> None:
    """Unknown keys, non-HTTP URLs, a missing URL, empty or spaced names, an empty secret and
    a name given twice stop the service at start."""
    with pytest.raises(ConfigurationError, match=message):
        load(one("http://a") + "marketplaces:\n" + entries)


def test_a_refused_registry_does_not_repeat_the_values_given() -> None:
    """The error names where the problem is, never the value (a secret, a header's token)."""
    with pytest.raises(ConfigurationError) as caught:
        load(one("http://a") + "marketplaces:\n  - {name: a, url: 'http://a', secret: 42}\n")
    assert "marketplaces.0.secret" in caught.value.message
    assert "42" not in caught.value.message


def test_an_unset_market_plane_secret_stops_the_service() -> None:
    entry = "  - {name: a, url: 'http://a', secret: '${NOPE}'}\n"
    with pytest.raises(ConfigurationError, match=r"unset environment variables: NOPE$"):
        load(one("http://a") + "marketplaces:\n" + entry)
