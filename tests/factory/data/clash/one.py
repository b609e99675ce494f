from pexen.sched.meta import func_meta


@func_meta
def check():
    return "one"
