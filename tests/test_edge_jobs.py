"""The edge agent's job book, with no broker and no threads: dedupe, late work, cancellation on a
swarm's end, and what the status says is running."""

from __future__ import annotations

import threading

from edge_node.events import AssignmentArrived, Connected, Job, JobFinished, JobStarted, SwarmEnded
from edge_node.jobs import Action, Announce, Cancel, DeliverPending, Dispatch, JobBook, Reject
from manta_mqtt.ownership import WrongThread
from manta_mqtt.protocol.limits import MAX_FINISHED_SWARMS
from manta_mqtt.protocol.messages import Assignment, CodeRef


def assignment(swarm: str = "sw", iteration: int = 0, task: str = "worker", attempt: int = 0) -> Assignment:
    return Assignment(swarm, iteration, task, attempt, CodeRef("ab" * 32, "worker"), {}, [], 60.0)


def accept(book: JobBook, a: Assignment) -> Job:
    (action,) = book.handle(AssignmentArrived(a))
    assert isinstance(action, Dispatch)
    return action.job


def rejections(actions: list[Action]) -> list[str]:
    return [a.reason for a in actions if isinstance(a, Reject)]


def test_a_new_assignment_becomes_a_job_for_the_worker() -> None:
    book = JobBook()
    job = accept(book, assignment())
    assert job.key == ("sw", 0, "worker", 0) and not job.cancel.is_set()
    assert book.jobs() == [job] and book.running is None


def test_a_duplicate_is_refused_while_queued_and_while_running() -> None:
    book = JobBook()
    job = accept(book, assignment())
    assert rejections(book.handle(AssignmentArrived(assignment()))) == ["duplicate"]
    book.handle(JobStarted(job.key))
    assert rejections(book.handle(AssignmentArrived(assignment()))) == ["duplicate"]
    assert book.jobs() == [job]


def test_another_attempt_or_iteration_is_not_a_duplicate() -> None:
    book = JobBook()
    accept(book, assignment())
    accept(book, assignment(attempt=1))
    accept(book, assignment(iteration=1))
    assert len(book.jobs()) == 3


def test_a_repeat_after_the_worker_is_done_is_a_new_job() -> None:
    """Answered from the outbox by the worker: not a duplicate once the first one finished."""
    book = JobBook()
    first = accept(book, assignment())
    book.handle(JobStarted(first.key))
    book.handle(JobFinished(first.key))
    second = accept(book, assignment())
    assert second is not first and book.jobs() == [second]


def test_status_reflects_the_running_job() -> None:
    book = JobBook()
    job = accept(book, assignment("sw", 3, "worker"))
    assert book.handle(JobStarted(job.key)) == [Announce()]
    assert book.running is job and job.label == "sw/3/worker"
    assert book.handle(JobFinished(job.key)) == [Announce()]
    assert book.running is None and book.jobs() == []


def test_a_job_skipped_by_the_worker_leaves_the_book_without_an_announce() -> None:
    book = JobBook()
    job = accept(book, assignment())
    assert book.handle(JobFinished(job.key)) == []
    assert book.jobs() == []


def test_a_swarm_end_cancels_its_queued_and_running_jobs_only() -> None:
    book = JobBook()
    running = accept(book, assignment("sw", 0))
    queued = accept(book, assignment("sw", 1))
    other = accept(book, assignment("other", 0))
    book.handle(JobStarted(running.key))
    actions = book.handle(SwarmEnded("sw", "stopped"))
    assert all(isinstance(a, Cancel) for a in actions)
    assert {a.job.key for a in actions if isinstance(a, Cancel)} == {running.key, queued.key}
    assert all("swarm sw is stopped" in a.why for a in actions if isinstance(a, Cancel))
    assert other in book.jobs()  # another swarm's job goes on
    assert book.handle(SwarmEnded("sw", "stopped")) == []  # the retained state again: nothing new


def test_a_cancelled_job_stays_known_until_the_worker_is_done_with_it() -> None:
    book = JobBook()
    job = accept(book, assignment())
    book.handle(SwarmEnded("sw", "failed"))
    assert book.jobs() == [job]
    book.handle(JobFinished(job.key))
    assert book.jobs() == []


def test_asked_again_while_its_cancelled_job_winds_down_it_runs_again_after() -> None:
    """A coordinator lost (its will cancels the job) and resumed asks again with the same key while
    the cancelled job is still ending (fetching its blobs): not a duplicate, a job once it ends."""
    book = JobBook()
    a = assignment()
    job = accept(book, a)
    book.handle(JobStarted(job.key))
    for action in book.handle(SwarmEnded("sw", "lost")):
        assert isinstance(action, Cancel)
        action.job.cancel.set()  # what the agent does with a Cancel
    assert book.handle(AssignmentArrived(a)) == []  # held, not refused
    out = book.handle(JobFinished(job.key))
    assert Announce() in out
    (again,) = [x.job for x in out if isinstance(x, Dispatch)]
    assert again is not job and again.key == job.key and not again.cancel.is_set()
    assert book.jobs() == [again]


def test_assignments_of_a_finished_swarm_are_late() -> None:
    book = JobBook()
    book.handle(SwarmEnded("sw", "completed"))
    assert book.is_finished("sw")
    assert rejections(book.handle(AssignmentArrived(assignment("sw")))) == ["late"]
    assert book.jobs() == []
    accept(book, assignment("other"))


def test_connected_announces_and_asks_for_delivery() -> None:
    assert JobBook().handle(Connected()) == [Announce(), DeliverPending()]


def test_the_book_belongs_to_one_thread() -> None:
    book = JobBook()
    book.handle(Connected())  # this thread owns it now
    errors: list[BaseException] = []

    def intruder() -> None:
        try:
            book.handle(AssignmentArrived(assignment()))
        except WrongThread as exc:
            errors.append(exc)

    thread = threading.Thread(target=intruder, name="intruder")
    thread.start()
    thread.join()
    assert len(errors) == 1 and "job book" in str(errors[0])
    assert book.jobs() == []  # the intruder changed nothing


def test_the_finished_swarms_it_remembers_are_bounded() -> None:
    """Forged terminal states of made-up swarms cannot grow the node's memory forever."""
    book = JobBook()
    for i in range(MAX_FINISHED_SWARMS + 50):
        book.handle(SwarmEnded(f"s{i}", "completed"))
    assert not book.is_finished("s0") and book.is_finished(f"s{MAX_FINISHED_SWARMS + 49}")
    assert len(book._finished) == MAX_FINISHED_SWARMS
