from alpine
run echo lower
copy a b
