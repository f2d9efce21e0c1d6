"""Tests that import Locust into their own interpreter.

Importing Locust monkey-patches the interpreter for gevent, which fails once
``ssl`` is in use (as it is in the main test run, by boto3), and would turn the
other tests' threads into greenlets. So the main run collects nothing here;
``tests/test_in_locust.py`` runs this folder in a fresh interpreter that
imports Locust first.
"""
