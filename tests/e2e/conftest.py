"""The real server (`mistralrs serve` on SmolLM2-135M Q4K) for the whole session, driven with the openai SDK.

A failing test gets the server's log attached to its report.
"""
import openai
import pytest

from live_server import LiveServer

SERVER_ARGS = ["--threads", "2", "--max-batch", "16", "--max-seq-len", "2048", "--http-threads", "64"]
KEEP_ALIVE_MS = "1000"  # short, so a stream whose client left is noticed even while it waits for tokens
STARTUP_DEADLINE_S = 120
_SERVER_KEY = pytest.StashKey[LiveServer]()


@pytest.fixture(scope="session")
def live_server(smollm2_artifact, tmp_path_factory, pytestconfig):
    artifact = smollm2_artifact("Q4K")
    log_path = tmp_path_factory.mktemp("e2e") / "server.log"
    server = LiveServer(["--artifact", str(artifact), *SERVER_ARGS], log_path, {"KEEP_ALIVE_INTERVAL": KEEP_ALIVE_MS})
    pytestconfig.stash[_SERVER_KEY] = server
    try:
        server.wait_until_healthy(STARTUP_DEADLINE_S)
        yield server
    finally:
        exit_code = server.stop()
        del pytestconfig.stash[_SERVER_KEY]
        if exit_code != 0:
            print(f"\nthe e2e server exited with {exit_code}:\n{server.log()}")


@pytest.fixture(scope="session")
def base_url(live_server) -> str:
    return live_server.base_url


@pytest.fixture(scope="session")
def client(base_url):
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key="EMPTY", max_retries=0, timeout=120) as client:
        yield client


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    server = item.config.stash.get(_SERVER_KEY, None)
    if report.failed and server is not None:
        report.sections.append(("mistralrs serve log", server.log()))
