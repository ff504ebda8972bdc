# C types for streams/packed.py when Cython compiles it (setup.py); the .py stays plain Python.
# Integers here are 64-bit: every quantity, price and event time is bounded by the event schema
# (flashsale/events.py), and sums of cents stay far below 2**63.
import cython

@cython.locals(
    kinds=list, skus=list, quantities=list, stamps=list, prices=list, countries=list,
    categories=list, merchants=list, provinces=list, outcomes=list, amounts=list, rows=list,
    late_rows=list, line_ids=list, fresh=list, stock=dict, lines_open=dict, restocked_at=dict,
    restocked=dict, sold=dict, sell_outs=list, order_ids=list, lines=list, by_country=dict,
    by_category=dict, by_merchant=dict, by_province=dict, windows=dict, minute_units=dict,
    minute_held=dict, record=list, s_counts=list, m_counts=list, offset=cython.longlong,
    window=cython.Py_ssize_t, grace=cython.longlong, newest=cython.longlong, n=cython.Py_ssize_t,
    j=cython.Py_ssize_t, units=cython.longlong, have=cython.longlong, amount=cython.longlong,
    price=cython.longlong, held_units=cython.longlong, held_amount=cython.longlong,
    ts=cython.longlong, start=cython.longlong, second=cython.longlong,
    minute=cython.longlong, counted=cython.int, matched=cython.bint, prior=cython.longlong,
    accepted=cython.Py_ssize_t, rejected=cython.Py_ssize_t, paid=cython.Py_ssize_t,
    cancelled=cython.Py_ssize_t, refunded=cython.Py_ssize_t, orphans=cython.Py_ssize_t,
    restocks=cython.Py_ssize_t, mismatches=cython.Py_ssize_t, late=cython.Py_ssize_t,
    refunded_cents=cython.longlong,
    gmv=cython.longlong, s_acc=cython.longlong, s_paid=cython.longlong, s_gmv=cython.longlong,
    m_acc=cython.longlong, m_paid=cython.longlong, m_gmv=cython.longlong,
)
cpdef long long _decide(object state, dict c, list line_ids, list fresh, object result) except? -1

@cython.locals(
    order_ids=list, lines=list, kinds=list, line_suffix=tuple, type_suffix=dict, n=cython.Py_ssize_t,
    j=cython.Py_ssize_t, line_ids=list, event_ids=list, order_id=str, line_id=str,
)
cpdef tuple _ids(list order_ids, list lines, list kinds)

@cython.locals(
    event_ids=list, n=cython.Py_ssize_t, held=cython.Py_ssize_t, window=cython.Py_ssize_t,
    j=cython.Py_ssize_t, distinct=set, hits=set, candidates=set, added=set, fresh=list,
    dup_rows=list, rank=dict, evictable=list, inserted=list,
)
cpdef object fresh_rows(object state, list event_ids)
