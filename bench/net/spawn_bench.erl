%% spawn_bench: N short processes (/bin/echo hello) as Erlang ports, at most
%% C at a time, each one's output read to the end and its exit status
%% collected; the same work as spawn_bench.lua.
%%   erl -noshell -pa DIR -s spawn_bench main N C ROUNDS
-module(spawn_bench).
-export([main/1]).

main([NA, CA, RA]) ->
    N = list_to_integer(atom_to_list(NA)),
    C = list_to_integer(atom_to_list(CA)),
    Rounds = list_to_integer(atom_to_list(RA)),
    round(N, C),
    Times = [begin
                 {T, ok} = timer:tc(fun() -> round(N, C) end),
                 io:format("spawn_echo_~p us=~p~n", [N, T]),
                 T
             end || _ <- lists:seq(1, Rounds)],
    Sorted = lists:sort(Times),
    io:format("spawn_echo_~p median_us=~p min_us=~p n=~p~n",
              [N, lists:nth((Rounds + 1) div 2, Sorted), hd(Sorted), Rounds]),
    halt().

round(N, C) ->
    Self = self(),
    Counter = counters:new(1, []),
    Pids = [spawn_link(fun() -> worker(Counter, N), Self ! {done, self()} end)
            || _ <- lists:seq(1, C)],
    [receive {done, P} -> ok end || P <- Pids],
    ok.

worker(Counter, N) ->
    counters:add(Counter, 1, 1),
    case counters:get(Counter, 1) =< N of
        true -> one(), worker(Counter, N);
        false -> ok
    end.

one() ->
    Port = open_port({spawn_executable, "/bin/echo"},
                     [{args, ["hello"]}, binary, exit_status, stream]),
    collect(Port, <<>>).

collect(Port, Acc) ->
    receive
        {Port, {data, D}} -> collect(Port, <<Acc/binary, D/binary>>);
        {Port, {exit_status, 0}} -> <<"hello\n">> = Acc, ok
    end.
