"""The Functions app as Azure runs it: registers the blueprints, nothing else.

Settings are checked at import so a missing one fails the host at start-up, naming the setting.
"""

import os

import azure.functions as func

from functions import collect, http_api, submit, watchdog
from shared.pure.settings import load

load(os.environ)

app = func.FunctionApp()
for blueprint in (submit.bp, watchdog.bp, collect.bp, http_api.bp):
    app.register_functions(blueprint)
