import pytest
from falcon import testing

from fake_engine import FakeEngine
from mistralrs.api import create_app


@pytest.fixture
def engine():
    return FakeEngine()


@pytest.fixture
def client(engine):
    return testing.TestClient(create_app(engine))
