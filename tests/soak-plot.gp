# Draws the soak's CSV (tests/soak): the server's resident memory,
# descriptors, peers and CPU over time, one panel each, and below them the
# load it carried, as PNG.
#   gnuplot -e "csv='tests/soak.csv'; out='tests/soak.png'" tests/soak-plot.gp
if (!exists("csv")) csv = 'tests/soak.csv'
if (!exists("out")) out = 'tests/soak.png'

set datafile separator ','
set terminal pngcairo size 900,1150 font 'sans,10' background '#ffffff'
set output out
set key autotitle columnhead
set grid
set offsets 0, 0, graph 0.25, 0 # room above each line for the key and the label
set lmargin 12

# The warm-up as tests/soak.c has it: the first fifth of the run, at least
# 30 s; the bounds hold from its end.
stats csv using 'time_s' nooutput
warmup = STATS_max / 5 > 30 ? STATS_max / 5 : 30
set arrow 1 from warmup, graph 0 to warmup, graph 1 nohead dashtype 2 lc rgb '#808080'
set label 1 'end of warm-up' at warmup, graph 0.08 offset 0.5,0 tc rgb '#808080'

set multiplot layout 5,1 title 'dtlsplex soak: one echo server under churn, steady data, a ClientHello flood and garbage'
set ylabel 'RSS (KiB)'
set yrange [0:*]
plot csv using 'time_s':'rss_kib' with linespoints lw 2 pt 7 ps 0.5 notitle
unset label 1 # named once; the dashed line says it below

set ylabel 'descriptors'
plot csv using 'time_s':'fds' with linespoints lw 2 pt 7 ps 0.5 notitle

set ylabel 'peers'
plot csv using 'time_s':'peers' with linespoints lw 2 pt 7 ps 0.5 notitle

# The first row has no interval before it: no CPU figure, no rate.
set ylabel 'CPU (% of a core)'
plot csv using 'time_s':($0 == 0 ? NaN : column('cpu_percent')) with linespoints lw 2 pt 7 ps 0.5 notitle

# Per second over each interval, from the running totals (one pair of
# last values per series: gnuplot reads the file once per series).
set ylabel 'per second'
set xlabel 'seconds since the load started'
set key top right horizontal
ve = 0; te = 0; vh = 0; th = 0; vc = 0; tc = 0
plot csv using 'time_s':(d = column('echoes') - ve, t = column('time_s') - te, ve = column('echoes'), \
                         te = column('time_s'), $0 == 0 ? NaN : d / t) with linespoints lw 2 pt 7 ps 0.5 title 'echoes', \
     '' using 'time_s':(d = column('handshakes') - vh, t = column('time_s') - th, vh = column('handshakes'), \
                        th = column('time_s'), $0 == 0 ? NaN : d / t) with linespoints lw 2 pt 7 ps 0.5 title 'handshakes', \
     '' using 'time_s':(d = column('hellos') - vc, t = column('time_s') - tc, vc = column('hellos'), \
                        tc = column('time_s'), $0 == 0 ? NaN : d / t / 100) with linespoints lw 2 pt 7 ps 0.5 \
        title 'spoofed ClientHellos / 100'
unset multiplot
