import pytest

from shared.pure.setup_summary import BATCH_DEFAULT_IDENTITY, runs_as, setup_summary


@pytest.mark.parametrize(("identity", "words"), [
    (None, BATCH_DEFAULT_IDENTITY),
    ({"userName": "ops"}, "user account ops of the pool"),
    ({"autoUser": {"elevationLevel": "admin", "scope": "task"}}, "admin auto-user (task)"),
    ({"autoUser": {}}, "non-admin auto-user (pool)"),
])
def test_runs_as_in_words(identity, words):
    assert runs_as(identity) == words


def test_a_sweep_and_its_merge_read_as_two_kinds_of_task():
    summary = setup_summary({
        "preparation": {"commandLine": "x", "userIdentity": {"autoUser": {"elevationLevel": "admin"}},
                        "rerunOnNodeRebootAfterSuccess": False},
        "taskFactory": {"start": 0, "end": 99, "idFormat": "{0}", "retentionTime": "PT2H",
                        "applicationPackageReferences": [{"applicationId": "blender", "version": "4.1"},
                                                         {"applicationId": "ffmpeg"}]},
        "tasks": [{"id": "merge", "dependsOn": {"taskFactory": True}, "outputFiles": [{}]},
                  {"id": "a"}, {"id": "b"}],
    })
    assert summary["preparation"] == {"runsAs": "admin auto-user (pool)", "waitForSuccess": True,
                                      "rerunAfterReboot": False, "retention": "P7D, Batch's default"}
    sweep, merge, plain = summary["kinds"]
    assert (sweep["tasks"], sweep["retention"], sweep["packages"]) == (100, "PT2H",
                                                                      ["blender 4.1", "ffmpeg (default version)"])
    assert (merge["waitsFor"], merge["outputFiles"]) == (["the whole sweep"], 1)
    assert (plain["name"], plain["tasks"], plain["runsAs"]) == ("tasks", 2, BATCH_DEFAULT_IDENTITY)


def test_no_request_no_summary():
    assert setup_summary(None) is None


def test_the_report_page_shows_the_setup_escaped():
    from shared.pure.report_page import render_report_page

    setup = setup_summary({"preparation": {"userIdentity": {"autoUser": {"elevationLevel": "admin"}}},
                           "tasks": [{"id": "t", "userIdentity": {"userName": "<b>x</b>"},
                                      "applicationPackageReferences": [{"applicationId": "blender", "version": "4.1"}]}]})
    page = render_report_page({"jobId": "j", "setup": setup})
    assert "<h2>Setup</h2>" in page and "admin auto-user (pool)" in page and "blender 4.1" in page
    assert "<b>x</b>" not in page and "user account &lt;b&gt;x&lt;/b&gt; of the pool" in page
