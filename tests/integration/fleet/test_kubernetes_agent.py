"""A real controller leases stages to a real `buildit agent --executor kubernetes` process whose API
server is the loopback FAKE (`tests.support.fake_kube_api`): the run's log and exit codes arrive
exactly. The fake's scripted "kubelet" stands in for containers (none can run a pod here)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.fleet.harness import Agent, controller_with_agents
from tests.support.fake_kube_api import FakeKubeAPI

PIPELINE = """
pipeline "on-kubernetes"
stage "build" {
    image "alpine:3.20"
    run "echo building"
    run "printf done"
}
stage "test" needs="build" {
    image "alpine:3.20"
    run "true"
    run "make test"
}
"""

H = b"\x1e\x1f"


def test_a_run_on_a_kubernetes_agent_reports_its_logs_and_exit_codes(tmp_path: Path) -> None:
    with FakeKubeAPI(namespace="builds", node="node-a") as fake:

        def kubelet(name: str) -> None:
            stage = fake.pods[name]["metadata"]["labels"]["buildit.io/stage"]
            if stage == "build":
                fake.script(name, H + b"1\nbuilding\n" + H + b"2\ndone", exit_code=0)
            else:
                fake.script(name, H + b"1\n" + H + b"2\nFAIL: 1 test\n", exit_code=2)

        fake.on_create = kubelet
        kubeconfig = fake.write_kubeconfig(tmp_path / "kubeconfig")
        env = {"KUBECONFIG": str(kubeconfig), "NODE_NAME": "node-a", "KUBERNETES_SERVICE_HOST": ""}
        with controller_with_agents(tmp_path, f"sqlite:///{tmp_path}/buildit.db") as (controller, agents):
            agents.append(
                Agent(
                    tmp_path,
                    controller,
                    "kube",
                    env=env,
                    executor="kubernetes",
                    extra_args=("--namespace", "builds", "--helper-image", "buildit:test"),
                )
            )
            pipeline = controller.create_pipeline(PIPELINE)
            number = controller.trigger(pipeline)
            run = controller.wait_run(pipeline, number)
            assert run["status"] == "failed", [(s["status"], s["message"]) for s in run["stages"]]
            build, test = run["stages"]
            assert (build["status"], build["exit_code"], build["agent"]) == ("succeeded", 0, "kube")
            assert (test["status"], test["exit_code"]) == ("failed", 2)
            assert 'command 2 of 2 failed: "make test" exited with 2' in test["message"]
            assert (
                controller.log(pipeline, number, "build")
                == "$ echo building\nbuilding\n$ printf done\ndone\n"
            )
            assert controller.log(pipeline, number, "test") == "$ true\n$ make test\nFAIL: 1 test\n"
            listed = {a["name"]: a for a in controller.agents()}
            assert listed["kube"]["executors"] == ["docker", "local"]
        assert fake.pods == {} and fake.secrets == {}
        assert len(fake.deleted_pods) == 2
