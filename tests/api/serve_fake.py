"""Runs the real gunicorn server over a FakeEngine: python serve_fake.py PORT"""
import sys

from fake_engine import FakeEngine
from mistralrs.api import run_server

if __name__ == "__main__":
    run_server(FakeEngine, "127.0.0.1", int(sys.argv[1]), threads=4)
