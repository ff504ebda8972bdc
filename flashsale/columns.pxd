# C types for flashsale/columns.py when Cython compiles it (setup.py); the .py stays plain Python.
import cython

@cython.locals(n=cython.Py_ssize_t, j=cython.Py_ssize_t, low=cython.longlong,
               high=cython.longlong, x=cython.longlong)
cpdef object int_bounds(list column, bint bool_free=*)

@cython.locals(n=cython.Py_ssize_t, j=cython.Py_ssize_t, low=cython.Py_ssize_t,
               high=cython.Py_ssize_t, size=cython.Py_ssize_t)
cpdef object text_bounds(list column)

@cython.locals(n=cython.Py_ssize_t, j=cython.Py_ssize_t, size=cython.Py_ssize_t,
               k=cython.longlong, out=list)
cpdef object expand(list values, list codes, bint bool_free=*)
